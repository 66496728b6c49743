//! `Indices`: the indexes of one data directory, by name.
//!
//! Each index lives in `<data_dir>/indices/<uuid>/`; the name is in the index's own metadata,
//! so a rename-free layout survives crashes at any point: an index directory without a
//! metadata file is an interrupted creation and is removed on open.
//!
//! An index is open or closed (Elasticsearch's `_close`/`_open`): a closed index has no engine
//! running, keeps its files and metadata, and is marked by a `closed` file in its directory, so
//! it stays closed across restarts.
//!
//! Every action that adds open shards (create, open, registering a follower index) is checked
//! against the node's [`ShardLimit`] under the registry's write lock, counting the shards open
//! and those reserved by actions in progress ([`Indices::reserve_shards`]), so two actions
//! racing cannot both pass it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock, RwLockWriteGuard};
use serde_json::Value;

use crate::durable_file;
use crate::error::{EngineError, Result};
use crate::index::{Index, IndexMetadata, IndexSettings, INDEX_METADATA_FILE};
use crate::mapping::Mappings;
use crate::shard_limit::ShardLimit;
use crate::storage::{EntryKind, StorageRef};

/// Marker file of a closed index.
const CLOSED_MARKER: &str = "closed";

/// How long [`Indices::close_index`] waits for the users of an index in flight to finish
/// (Elasticsearch's default timeout of a close).
pub const CLOSE_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a close looks whether they have.
const CLOSE_DRAIN_POLL: Duration = Duration::from_millis(1);

/// One registered index.
enum Slot {
    Open(Arc<Index>),
    Closed {
        dir: PathBuf,
        metadata: Box<IndexMetadata>,
    },
}

impl Slot {
    fn dir(&self) -> &Path {
        match self {
            Slot::Open(index) => index.dir(),
            Slot::Closed { dir, .. } => dir,
        }
    }
}

/// The indexes of a data directory.
pub struct Indices {
    /// Where the data directory is.
    storage: StorageRef,
    dir: PathBuf,
    indices: RwLock<BTreeMap<String, Slot>>,
    /// Held by every close, open and delete from start to end, so that a close waiting for
    /// its index's users never sees the index opened or deleted under it.
    transitions: Mutex<()>,
    /// The node's shard limit.
    shard_limit: ShardLimit,
    /// Shards reserved by actions in progress ([`Indices::reserve_shards`]).
    reserved_shards: Arc<AtomicU64>,
    /// The indices left closed because reopening them after a shard failure failed
    /// ([`Indices::reopen_failed`]), with why: an open or a delete of the index forgets it.
    failed_reopens: Mutex<BTreeMap<String, String>>,
}

/// Shards counted against the node's shard limit for an action in progress (a follow whose
/// recovery copies the shards before they are registered); released when dropped.
#[derive(Debug)]
pub struct ShardReservation {
    reserved: Arc<AtomicU64>,
    shards: u64,
}

impl ShardReservation {
    /// The shards reserved.
    pub fn shards(&self) -> u64 {
        self.shards
    }
}

impl Drop for ShardReservation {
    fn drop(&mut self) {
        let before = self.reserved.fetch_sub(self.shards, Ordering::AcqRel);
        assert!(before >= self.shards, "a reservation releases what it took");
    }
}

impl Indices {
    /// Opens (creating it if needed) the data directory and every index in it.
    pub fn open(data_dir: &Path) -> Result<Indices> {
        Indices::open_on(crate::storage::real(), data_dir)
    }

    /// [`Indices::open`] on `storage`.
    pub fn open_on(storage: StorageRef, data_dir: &Path) -> Result<Indices> {
        let dir = data_dir.join("indices");
        durable_file::create_dir_all(&*storage, &dir)?;
        let mut indices = BTreeMap::new();
        let mut entries = storage.list(&dir).map_err(|e| EngineError::io(&dir, e))?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let exists = |path: &Path| storage.exists(path).map_err(|e| EngineError::io(path, e));
        for entry in entries {
            let path = dir.join(&entry.name);
            if entry.kind != EntryKind::Dir {
                continue;
            }
            if !exists(&path.join(INDEX_METADATA_FILE))? {
                tracing::warn!(path = %path.display(), "removing an index whose creation was interrupted");
                storage
                    .remove_dir_all(&path)
                    .map_err(|e| EngineError::io(&path, e))?;
                continue;
            }
            if exists(&path.join(CLOSED_MARKER))? {
                let metadata = Index::read_metadata(&*storage, &path)?;
                indices.insert(
                    metadata.name.clone(),
                    Slot::Closed {
                        dir: path,
                        metadata: Box::new(metadata),
                    },
                );
                continue;
            }
            let index = Index::open_on(&storage, &path)?;
            indices.insert(index.name(), Slot::Open(Arc::new(index)));
        }
        Ok(Indices {
            storage,
            dir,
            indices: RwLock::new(indices),
            transitions: Mutex::new(()),
            shard_limit: ShardLimit::default(),
            reserved_shards: Arc::new(AtomicU64::new(0)),
            failed_reopens: Mutex::new(BTreeMap::new()),
        })
    }

    /// The node's shard limit (`cluster.max_shards_per_node`), settable at any time.
    pub fn shard_limit(&self) -> &ShardLimit {
        &self.shard_limit
    }

    /// Shards of the open indices plus those reserved by actions in progress: what the
    /// shard limit counts.
    pub fn open_shard_count(&self) -> u64 {
        count_open_shards(&self.indices.read()) + self.reserved_shards.load(Ordering::Acquire)
    }

    /// Reserves `shards` against the shard limit for an action that adds them later (see
    /// [`ShardReservation`]); refused as the limit refuses.
    pub fn reserve_shards(&self, shards: u64) -> Result<ShardReservation> {
        let indices = self.indices.write();
        self.check_shard_limit(&indices, shards)?;
        self.reserved_shards.fetch_add(shards, Ordering::AcqRel);
        Ok(ShardReservation {
            reserved: self.reserved_shards.clone(),
            shards,
        })
    }

    /// Refuses adding `adding` shards to the registry `indices` (held locked by the caller)
    /// when the limit would be exceeded.
    fn check_shard_limit(&self, indices: &BTreeMap<String, Slot>, adding: u64) -> Result<()> {
        let open = count_open_shards(indices) + self.reserved_shards.load(Ordering::Acquire);
        self.shard_limit.check(adding, open)
    }

    /// The open index called `name` (`IndexClosed` if it is closed or being closed).
    pub fn get(&self, name: &str) -> Result<Arc<Index>> {
        match self.indices.read().get(name) {
            Some(Slot::Open(index)) if !index.is_closing() => Ok(index.clone()),
            Some(Slot::Open(_) | Slot::Closed { .. }) => Err(EngineError::IndexClosed {
                name: name.to_string(),
            }),
            None => Err(not_found(name)),
        }
    }

    /// The metadata of an index, open or closed.
    pub fn metadata(&self, name: &str) -> Result<IndexMetadata> {
        match self.indices.read().get(name) {
            Some(Slot::Open(index)) => Ok(index.metadata()),
            Some(Slot::Closed { metadata, .. }) => Ok(metadata.as_ref().clone()),
            None => Err(not_found(name)),
        }
    }

    /// True when the index exists and is closed.
    pub fn is_closed(&self, name: &str) -> Result<bool> {
        match self.indices.read().get(name) {
            Some(slot) => Ok(matches!(slot, Slot::Closed { .. })),
            None => Err(not_found(name)),
        }
    }

    /// Closes an index: commits and stops its shards, keeps its files. Closing a closed index
    /// does nothing. From the start of the close the index takes no new users ([`get`]
    /// answers `IndexClosed`) and the long polls on its shards end; the close then waits up
    /// to [`CLOSE_DRAIN_TIMEOUT`] for the users in flight (requests, reads of followers) to
    /// finish. If one still holds the index then (a follow task of a follower index that was
    /// not paused, say), nothing is closed and the index is open as before.
    ///
    /// [`get`]: Indices::get
    pub fn close_index(&self, name: &str) -> Result<()> {
        self.close_index_within(name, CLOSE_DRAIN_TIMEOUT)
    }

    /// [`Indices::close_index`], waiting at most `drain_timeout` for the index's users.
    pub fn close_index_within(&self, name: &str, drain_timeout: Duration) -> Result<()> {
        let _transition = self.transitions.lock();
        let index = match self.indices.read().get(name) {
            Some(Slot::Open(index)) => index.clone(),
            Some(Slot::Closed { dir, .. }) => {
                // Down after a failed repair: closed by the operator from now on.
                if self.failed_reopens.lock().contains_key(name) {
                    durable_file::replace_atomically(
                        &*self.storage,
                        &dir.join(CLOSED_MARKER),
                        b"1",
                    )?;
                    self.failed_reopens.lock().remove(name);
                }
                return Ok(());
            }
            None => return Err(not_found(name)),
        };
        let began = index.begin_close();
        assert!(began, "closes and deletes are serialized by `transitions`");
        let (mut indices, index) = take_when_unused(&self.indices, name, index, drain_timeout)?;
        let dir = index.dir().to_path_buf();
        let metadata = index.metadata();
        // Marked closed only once every shard committed: a crash in between leaves it open.
        let closed = index.close().and_then(|()| {
            durable_file::replace_atomically(&*self.storage, &dir.join(CLOSED_MARKER), b"1")
                .map_err(EngineError::from)
        });
        // Whatever happened, the engines are gone: register it closed, so that an open
        // (which reopens from disk) is the way back.
        indices.insert(
            name.to_string(),
            Slot::Closed {
                dir,
                metadata: Box::new(metadata),
            },
        );
        closed
    }

    /// Reopens `name` if one of its shards failed (see [`ShardEngine::failure`]), as
    /// Elasticsearch reallocates a failed shard: the engines are closed and opened again from
    /// their durable state, which replays the translog and fills with no-ops the sequence
    /// numbers the failure left unprocessed, so the checkpoints advance again. Waits up to
    /// `drain_timeout` for the index's users, like a close. Returns the failures it repaired
    /// (empty when no shard had failed). If the reopen fails, the index is registered closed
    /// (without the closed marker, so a restart tries again), listed in
    /// [`Indices::failed_reopens`] until it is opened, closed or deleted, and the error is
    /// returned.
    ///
    /// [`ShardEngine::failure`]: crate::ShardEngine::failure
    pub fn reopen_failed(&self, name: &str, drain_timeout: Duration) -> Result<Vec<String>> {
        let _transition = self.transitions.lock();
        let index = match self.indices.read().get(name) {
            Some(Slot::Open(index)) => index.clone(),
            Some(Slot::Closed { .. }) => return Ok(Vec::new()),
            None => return Err(not_found(name)),
        };
        let failures = index.shard_failures();
        if failures.is_empty() {
            return Ok(Vec::new());
        }
        let began = index.begin_close();
        assert!(began, "closes and deletes are serialized by `transitions`");
        let (mut indices, index) = take_when_unused(&self.indices, name, index, drain_timeout)?;
        let dir = index.dir().to_path_buf();
        let metadata = index.metadata();
        if let Err(error) = index.close() {
            tracing::warn!(index = %name, %error, "closing an index with a failed shard");
        }
        match Index::open_on(&self.storage, &dir) {
            Ok(index) => {
                indices.insert(name.to_string(), Slot::Open(Arc::new(index)));
                Ok(failures.into_iter().map(|(_, failure)| failure).collect())
            }
            Err(error) => {
                indices.insert(
                    name.to_string(),
                    Slot::Closed {
                        dir,
                        metadata: Box::new(metadata),
                    },
                );
                self.failed_reopens
                    .lock()
                    .insert(name.to_string(), error.to_string());
                Err(error)
            }
        }
    }

    /// The indices [`Indices::reopen_failed`] left closed because their reopen failed, with
    /// the error: they are down, not closed by anyone, until an open of the index succeeds (or
    /// it is deleted, or a restart opens it).
    pub fn failed_reopens(&self) -> BTreeMap<String, String> {
        self.failed_reopens.lock().clone()
    }

    /// Opens again an index [`Indices::reopen_failed`] left closed (see
    /// [`Indices::failed_reopens`]); an error updates why it is down. Does nothing for any
    /// other index.
    pub fn retry_failed_reopen(&self, name: &str) -> Result<()> {
        if !self.failed_reopens.lock().contains_key(name) {
            return Ok(());
        }
        match self.open_index(name) {
            Ok(_) => Ok(()),
            Err(error) => {
                if let Some(reason) = self.failed_reopens.lock().get_mut(name) {
                    *reason = error.to_string();
                }
                Err(error)
            }
        }
    }

    /// Estimated bytes every open shard holds for its unrefreshed operations (see
    /// [`ShardEngine::indexing_buffer_bytes`]).
    ///
    /// [`ShardEngine::indexing_buffer_bytes`]: crate::ShardEngine::indexing_buffer_bytes
    pub fn indexing_buffer_bytes(&self) -> u64 {
        self.open_shards(crate::ShardEngine::indexing_buffer_bytes)
            .into_iter()
            .map(|(_, _, bytes)| bytes)
            .sum()
    }

    /// Keeps the node's indexing buffer within `budget` bytes (Elasticsearch's
    /// `indices.memory.index_buffer_size`): while the open shards together hold more, the
    /// shard holding most is refreshed, which releases what it held. Returns the shards
    /// refreshed, as (index, shard, bytes released). A shard that fails to refresh is skipped
    /// (its failure is reported by the shard).
    pub fn enforce_indexing_buffer(&self, budget: u64) -> Vec<(String, usize, u64)> {
        let mut shards = self.open_shards(crate::ShardEngine::indexing_buffer_bytes);
        let mut total: u64 = shards.iter().map(|(_, _, bytes)| bytes).sum();
        let mut refreshed = Vec::new();
        // Largest first.
        shards.sort_by_key(|shard| std::cmp::Reverse(shard.2));
        for (name, shard, bytes) in shards {
            if total <= budget || bytes == 0 {
                break;
            }
            let Ok(index) = self.get(&name) else {
                continue;
            };
            match index.shards()[shard].refresh() {
                Ok(()) => {
                    total = total.saturating_sub(bytes);
                    refreshed.push((name, shard, bytes));
                }
                Err(error) => {
                    tracing::warn!(index = %name, shard, %error, "refresh for the indexing buffer failed");
                }
            }
        }
        refreshed
    }

    /// `measure` of every shard of every open index, as (index, shard number, value).
    fn open_shards<T>(
        &self,
        measure: impl Fn(&crate::ShardEngine) -> T,
    ) -> Vec<(String, usize, T)> {
        let open: Vec<(String, Arc<Index>)> = self
            .indices
            .read()
            .iter()
            .filter_map(|(name, slot)| match slot {
                Slot::Open(index) => Some((name.clone(), index.clone())),
                Slot::Closed { .. } => None,
            })
            .collect();
        let mut measured = Vec::new();
        for (name, index) in open {
            for (number, shard) in index.shards().iter().enumerate() {
                let value = measure(shard);
                measured.push((name.clone(), number, value));
            }
        }
        measured
    }

    /// Opens a closed index (reopening its shards from disk). Opening an open index does
    /// nothing.
    pub fn open_index(&self, name: &str) -> Result<Arc<Index>> {
        let _transition = self.transitions.lock();
        let mut indices = self.indices.write();
        let dir = match indices.get(name) {
            Some(Slot::Open(index)) => return Ok(index.clone()),
            Some(Slot::Closed { dir, metadata }) => {
                let shards = u64::from(metadata.settings.number_of_shards);
                self.check_shard_limit(&indices, shards)?;
                dir.clone()
            }
            None => return Err(not_found(name)),
        };
        let index = Arc::new(Index::open_on(&self.storage, &dir)?);
        let marker = dir.join(CLOSED_MARKER);
        if self
            .storage
            .exists(&marker)
            .map_err(|e| EngineError::io(&marker, e))?
        {
            durable_file::remove_file(&*self.storage, &marker)?;
        }
        indices.insert(name.to_string(), Slot::Open(index.clone()));
        self.failed_reopens.lock().remove(name);
        Ok(index)
    }

    /// Runs `change` on the directory and metadata of a closed index (for changes that must
    /// not happen while it runs, such as turning a follower into a normal index).
    pub fn with_closed_index<T>(
        &self,
        name: &str,
        change: impl FnOnce(&Path, &IndexMetadata) -> Result<T>,
    ) -> Result<T> {
        let indices = self.indices.read();
        match indices.get(name) {
            Some(Slot::Closed { dir, metadata }) => change(dir, metadata),
            Some(Slot::Open(_)) => Err(EngineError::InvalidArgument(format!(
                "index [{name}] must be closed first"
            ))),
            None => Err(not_found(name)),
        }
    }

    /// A fresh directory for an index built outside this registry (remote recovery), to be
    /// registered with [`Indices::register_built`]. Nothing is created yet.
    pub fn new_index_dir(&self) -> PathBuf {
        self.dir.join(uuid::Uuid::new_v4().simple().to_string())
    }

    /// Registers an index whose shards were built in `dir` (from [`Indices::new_index_dir`]):
    /// writes its metadata and opens it. `reservation` holds the shards the build reserved
    /// (see [`Indices::reserve_shards`]); it is released once they are open, or on failure.
    /// On failure, when the name is taken or the shard limit (lowered since the reservation)
    /// refuses the shards, `dir` is removed.
    pub fn register_built(
        &self,
        dir: &Path,
        metadata: &IndexMetadata,
        reservation: ShardReservation,
    ) -> Result<Arc<Index>> {
        let mut indices = self.indices.write();
        let shards = u64::from(metadata.settings.number_of_shards);
        let built = if indices.contains_key(&metadata.name) {
            Err(EngineError::IndexAlreadyExists {
                name: metadata.name.clone(),
            })
        } else {
            // The reservation counts these shards already: released first, so they are
            // counted once.
            drop(reservation);
            self.check_shard_limit(&indices, shards)
                .and_then(|()| Index::create_from_shards(&self.storage, dir, metadata))
        };
        match built {
            Ok(index) => {
                let index = Arc::new(index);
                indices.insert(metadata.name.clone(), Slot::Open(index.clone()));
                Ok(index)
            }
            Err(error) => {
                if let Err(cleanup) = self.storage.remove_dir_all(dir) {
                    tracing::warn!(dir = %dir.display(), %cleanup, "cannot remove a failed index build");
                }
                Err(error)
            }
        }
    }

    /// The storage the data directory is on.
    pub fn storage(&self) -> &StorageRef {
        &self.storage
    }

    /// Names of every index.
    pub fn names(&self) -> Vec<String> {
        self.indices.read().keys().cloned().collect()
    }

    /// Creates an index from Elasticsearch settings and mappings bodies.
    pub fn create(&self, name: &str, settings: &Value, mappings: &Value) -> Result<Arc<Index>> {
        let settings = IndexSettings::from_es_json(settings)?;
        let mappings = Mappings::from_es_json(mappings)?;
        let uuid = uuid::Uuid::new_v4().to_string();
        self.create_with(name, &uuid, settings, mappings, false)
    }

    /// Creates an index from parts (a follower passes the leader's settings and mappings).
    pub fn create_with(
        &self,
        name: &str,
        uuid: &str,
        settings: IndexSettings,
        mappings: Mappings,
        follower: bool,
    ) -> Result<Arc<Index>> {
        let shards = u64::from(settings.number_of_shards);
        self.insert_new(name, shards, |path| {
            Index::create_with(
                &self.storage,
                path,
                name,
                uuid,
                settings,
                mappings,
                follower,
            )
        })
    }

    /// Builds a new index of `shards` shards with `build` in a fresh directory and registers
    /// it under `name`.
    fn insert_new(
        &self,
        name: &str,
        shards: u64,
        build: impl FnOnce(&Path) -> Result<Index>,
    ) -> Result<Arc<Index>> {
        let mut indices = self.indices.write();
        if indices.contains_key(name) {
            return Err(EngineError::IndexAlreadyExists {
                name: name.to_string(),
            });
        }
        self.check_shard_limit(&indices, shards)?;
        let path = self.dir.join(uuid::Uuid::new_v4().simple().to_string());
        let index = Arc::new(build(&path)?);
        indices.insert(name.to_string(), Slot::Open(index.clone()));
        Ok(index)
    }

    /// Deletes an index and its files.
    pub fn delete(&self, name: &str) -> Result<()> {
        let _transition = self.transitions.lock();
        let slot = self
            .indices
            .write()
            .remove(name)
            .ok_or_else(|| not_found(name))?;
        self.failed_reopens.lock().remove(name);
        if let Slot::Open(index) = &slot {
            // Whoever still holds it sees it deleted, and its long polls end now.
            index.begin_delete();
        }
        let path = slot.dir().to_path_buf();
        drop(slot);
        // The metadata file goes first: from then on the directory is an interrupted creation
        // that a restart removes, whatever happens below.
        let metadata = path.join(INDEX_METADATA_FILE);
        durable_file::remove_file(&*self.storage, &metadata)?;
        // The index is deleted now. Its files may still be written for a moment by work that
        // holds it (a merge finishing, a reader of a follower in flight), which makes removing
        // the directory fail: try a few times, then leave it to the next start.
        for attempt in 1..=DELETE_ATTEMPTS {
            match self.storage.remove_dir_all(&path) {
                Ok(()) => return Ok(()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(error) if attempt == DELETE_ATTEMPTS => {
                    tracing::warn!(index = %name, dir = %path.display(), %error, "index deleted; its directory is removed at the next start");
                }
                Err(_) => std::thread::sleep(DELETE_RETRY_DELAY),
            }
        }
        Ok(())
    }
}

/// Attempts at removing a deleted index's directory before leaving it to the next start.
const DELETE_ATTEMPTS: u32 = 10;
/// Pause between those attempts.
const DELETE_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// Takes the open index `name` (marked closing by the caller, which holds the `transitions`
/// lock) out of the registry once it has no user but the registry and the caller, waiting up
/// to `drain_timeout`. If it is still in use then, it is put back open and the close is
/// refused.
fn take_when_unused<'a>(
    registry: &'a RwLock<BTreeMap<String, Slot>>,
    name: &str,
    index: Arc<Index>,
    drain_timeout: Duration,
) -> Result<(RwLockWriteGuard<'a, BTreeMap<String, Slot>>, Index)> {
    // Two handles are expected: the registry's and the caller's.
    let deadline = Instant::now() + drain_timeout;
    while Arc::strong_count(&index) > 2 && Instant::now() < deadline {
        std::thread::sleep(CLOSE_DRAIN_POLL);
    }
    let mut indices = registry.write();
    drop(index);
    let Some(Slot::Open(index)) = indices.remove(name) else {
        unreachable!("open, close and delete are serialized by `transitions`");
    };
    match Arc::try_unwrap(index) {
        Ok(index) => Ok((indices, index)),
        Err(index) => {
            index.cancel_close();
            indices.insert(name.to_string(), Slot::Open(index));
            Err(EngineError::InvalidArgument(format!(
                "index [{name}] is in use and cannot be closed now; stop what uses it \
                 (for a follower index: pause following) and retry"
            )))
        }
    }
}

/// Shards of the open indices of `indices` (an index being closed still counts).
fn count_open_shards(indices: &BTreeMap<String, Slot>) -> u64 {
    indices
        .values()
        .map(|slot| match slot {
            Slot::Open(index) => index.shards().len() as u64,
            Slot::Closed { .. } => 0,
        })
        .sum()
}

fn not_found(name: &str) -> EngineError {
    EngineError::IndexNotFound {
        name: name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_indices_are_typed_errors_and_indices_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let indices = Indices::open(dir.path()).unwrap();
        assert!(matches!(
            indices.get("nope"),
            Err(EngineError::IndexNotFound { .. })
        ));
        assert!(matches!(
            indices.delete("nope"),
            Err(EngineError::IndexNotFound { .. })
        ));
        indices
            .create("a", &json!({"refresh_interval": "-1"}), &json!({}))
            .unwrap();
        indices.create("b", &json!({}), &json!({})).unwrap();
        assert!(matches!(
            indices.create("a", &json!({}), &json!({})),
            Err(EngineError::IndexAlreadyExists { .. })
        ));
        indices
            .get("a")
            .unwrap()
            .index(crate::shard::IndexRequest::new("1", b"{}".to_vec()))
            .unwrap();
        indices.delete("b").unwrap();
        drop(indices);
        let indices = Indices::open(dir.path()).unwrap();
        assert_eq!(indices.names(), vec!["a".to_string()]);
        assert!(indices.get("a").unwrap().get("1").unwrap().is_some());
    }

    #[test]
    fn the_shard_limit_refuses_creates_opens_and_reservations_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let indices = Indices::open(dir.path()).unwrap();
        indices.shard_limit().set(4);
        indices
            .create("a", &json!({"number_of_shards": 3}), &json!({}))
            .unwrap();
        let Err(error) = indices.create("b", &json!({"number_of_shards": 2}), &json!({})) else {
            panic!("created past the limit")
        };
        assert_eq!(
            error.to_string(),
            "Validation Failed: 1: this action would add [2] shards, but this cluster \
             currently has [3]/[4] maximum normal shards open;"
        );
        assert!(matches!(
            indices.get("b"),
            Err(EngineError::IndexNotFound { .. })
        ));
        assert_eq!(
            std::fs::read_dir(dir.path().join("indices"))
                .unwrap()
                .count(),
            1,
            "a refused create leaves no directory"
        );
        indices.create("b", &json!({}), &json!({})).unwrap();
        assert_eq!(indices.open_shard_count(), 4);

        // A closed index frees its shards; opening it again counts them.
        indices.close_index("a").unwrap();
        assert_eq!(indices.open_shard_count(), 1);
        let reservation = indices.reserve_shards(2).unwrap();
        assert_eq!(indices.open_shard_count(), 3);
        let Err(error) = indices.open_index("a") else {
            panic!("opened past the limit")
        };
        assert!(matches!(
            error,
            EngineError::ShardLimitExceeded {
                adding: 3,
                open: 3,
                limit: 4
            }
        ));
        assert!(indices.is_closed("a").unwrap());
        assert!(indices.reserve_shards(2).is_err());
        drop(reservation);
        assert_eq!(indices.open_shard_count(), 1);
        indices.open_index("a").unwrap();

        // The limit is dynamic: raised, the refused index fits.
        indices.shard_limit().set(6);
        indices
            .create("c", &json!({"number_of_shards": 2}), &json!({}))
            .unwrap();
        assert_eq!(indices.open_shard_count(), 6);
    }

    #[test]
    fn closed_indices_keep_their_data_stay_closed_across_restarts_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let indices = Indices::open(dir.path()).unwrap();
        let index = indices.create("logs", &json!({}), &json!({})).unwrap();
        index
            .index(crate::shard::IndexRequest::new("1", b"{}".to_vec()))
            .unwrap();
        // Held past the close's wait: the close is refused and the index is open as before.
        let error = indices
            .close_index_within("logs", Duration::from_millis(20))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "index [logs] is in use and cannot be closed now; stop what uses it (for a \
             follower index: pause following) and retry"
        );
        assert!(
            !indices.is_closed("logs").unwrap(),
            "still open after a refused close"
        );
        assert!(!index.is_closing());
        assert!(indices.get("logs").is_ok());
        drop(index);
        indices.close_index("logs").unwrap();
        indices.close_index("logs").unwrap();
        assert!(indices.is_closed("logs").unwrap());
        let Err(error) = indices.get("logs") else {
            panic!("a closed index is not served")
        };
        assert!(matches!(error, EngineError::IndexClosed { .. }), "{error}");
        assert_eq!(error.status(), 400);
        assert_eq!(indices.metadata("logs").unwrap().name, "logs");
        assert!(indices
            .with_closed_index("logs", |dir, _| Ok(dir.exists()))
            .unwrap());
        drop(indices);

        let indices = Indices::open(dir.path()).unwrap();
        assert!(
            indices.is_closed("logs").unwrap(),
            "closed across a restart"
        );
        let index = indices.open_index("logs").unwrap();
        assert!(index.get("1").unwrap().is_some(), "data kept");
        assert!(indices.with_closed_index("logs", |_, _| Ok(())).is_err());
        drop(index);
        drop(indices);
        let indices = Indices::open(dir.path()).unwrap();
        assert!(!indices.is_closed("logs").unwrap(), "open across a restart");
        indices.close_index("logs").unwrap();
        indices.delete("logs").unwrap();
        assert!(indices.names().is_empty());
    }

    #[test]
    fn a_close_ends_the_long_polls_and_waits_for_the_users_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let indices = Arc::new(Indices::open(dir.path()).unwrap());
        let index = indices
            .create("logs", &json!({"number_of_shards": 2}), &json!({}))
            .unwrap();
        // A long poll on each shard, far longer than the test, holding the index as a
        // follower's read does.
        let polls: Vec<_> = (0..2)
            .map(|shard| {
                let index = index.clone();
                std::thread::spawn(move || {
                    let started = Instant::now();
                    index.shards()[shard]
                        .wait_for_global_checkpoint(crate::SeqNo(0), Duration::from_secs(600));
                    started.elapsed()
                })
            })
            .collect();
        // A request in flight that holds the index a little longer.
        let in_flight = index.clone();
        drop(index);
        let user = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(in_flight);
        });
        std::thread::sleep(Duration::from_millis(50));
        let closing = Instant::now();
        indices.close_index("logs").unwrap();
        assert!(
            closing.elapsed() >= Duration::from_millis(100),
            "waited for the user"
        );
        assert!(closing.elapsed() < Duration::from_secs(10));
        for poll in polls {
            assert!(
                poll.join().unwrap() < Duration::from_secs(10),
                "the poll ended"
            );
        }
        user.join().unwrap();
        assert!(indices.is_closed("logs").unwrap());
        assert!(matches!(
            indices.get("logs"),
            Err(EngineError::IndexClosed { .. })
        ));
        // Reopened, its shards long-poll again.
        let index = indices.open_index("logs").unwrap();
        let waited = Instant::now();
        index.shards()[0].wait_for_global_checkpoint(crate::SeqNo(0), Duration::from_millis(100));
        assert!(waited.elapsed() >= Duration::from_millis(100));
    }
}
