//! `SegmentDirectory`: the tantivy `Directory` of a shard's index, over the engine's
//! [`Storage`] seam, so that segment files, `meta.json` and `.managed.json` go through the same
//! backend (and the same simulated power cuts) as everything else Tandem writes.
//!
//! Reads map a whole file through [`Storage::map`] and keep a weak handle on the mapping, so
//! that the engine can let go of the resident pages of files it has finished scanning
//! ([`SegmentDirectory::release_resident_pages`]). Why: a mapped page a read touched stays in
//! the process's resident set for as long as the file is mapped, whether or not anything reads
//! it again. The engine scans whole files that nothing needs resident afterwards (the id filter
//! built over a new segment's `_id` terms, the source segments a merge reads), and during a
//! bulk load those pages grew the node's RSS with the index (hundreds of MiB per 10 M
//! documents) although the kernel could have the same bytes back from its page cache at the
//! cost of a minor fault.
//!
//! Guarantees:
//! - Releasing never changes what a read sees: mappings are shared, read-only maps of segment
//!   files, which tantivy writes once and never modifies; `MADV_DONTNEED` on such a mapping
//!   only drops its page-table entries, and the next access maps the same bytes again from the
//!   page cache (or the file).
//! - A release only advises mappings it holds alive for the call (the registry is weak, the
//!   release upgrades), so it can never advise an address range that was unmapped and reused.
//! - One mapping per file while any reader holds it, as `MmapDirectory` does.
//! - A file tantivy finished writing is synced ([`SyncSite::SegmentFile`]); the directory is
//!   synced when tantivy asks ([`SyncSite::SegmentDir`], before it writes a commit's
//!   `meta.json`).
//! - `atomic_write` (how tantivy writes `meta.json`, i.e. commits, and `.managed.json`, from
//!   several threads at once) writes a temp file unique to the call, syncs it, renames it over
//!   the target **and syncs the directory** ([`durable_file::replace_with_sites`]); temps a
//!   crashed process left are removed when the directory is opened. tantivy's own `MmapDirectory` does
//!   not sync the directory after that rename, so a power cut after a commit returned could
//!   bring back the previous `meta.json`, while the engine had already trimmed the translog
//!   generations that commit made unnecessary: acknowledged writes lost. The power-loss test
//!   catches that when [`SyncSite::SegmentAtomicRename`] is switched off.
//! - Locks are [`Storage::try_lock`]s: a crashed process holds none.
//! - Once [`SegmentDirectory::retire`]d (its engine closed), every call that writes fails
//!   with [`RETIRED`]: a merge its writer had started (tantivy neither waits for nor cancels
//!   merges when a writer is dropped, and a dropped writer never registers their result) stops
//!   at its next write instead of running on for minutes beside whatever opens the shard next,
//!   and nothing the old engine still holds can write into a directory that a new engine owns.
//! - The first error of a call that writes (a segment file's write or sync, a new file, an
//!   atomic write, a directory sync, a removal) is kept ([`SegmentDirectory::first_write_failure`]):
//!   tantivy's indexing threads die on such an error and report only that "an index writer
//!   was killed", and the engine names the cause with it.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tantivy::directory::error::{
    DeleteError, LockError, OpenDirectoryError, OpenReadError, OpenWriteError,
};
use tantivy::directory::{
    AntiCallToken, DirectoryLock, FileHandle, Lock, OwnedBytes, TerminatingWrite, WatchCallback,
    WatchCallbackList, WatchHandle, WritePtr,
};
use tantivy::Directory;

use crate::durable_file;
use crate::storage::{EntryKind, FileBytes, FileRef, OpenMode, StorageLock, StorageRef, SyncSite};

/// How long a blocking lock (tantivy's meta lock, held for moments) is waited for.
const BLOCKING_LOCK_DEADLINE: Duration = Duration::from_secs(30);

/// Between two attempts at a blocking lock.
const LOCK_RETRY_INTERVAL: Duration = Duration::from_millis(5);

/// The error of a call that writes into a retired directory (see the module documentation).
pub const RETIRED: &str = "the shard's engine was closed: its directory takes no more writes";

/// A mapped file, shared by every reader of it.
struct Mapping {
    bytes: FileBytes,
}

/// The bytes of a [`Mapping`], as tantivy's `OwnedBytes` holds them.
struct MappedBytes(Arc<Mapping>);

impl std::ops::Deref for MappedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0.bytes
    }
}

// SAFETY: the bytes are those of the mapping (a map or a heap buffer), which lives at a fixed
// address as long as the `Arc` does; moving `MappedBytes` moves the pointer, not the bytes.
unsafe impl stable_deref_trait::StableDeref for MappedBytes {}

/// A shard's tantivy directory (see the module documentation).
#[derive(Clone)]
pub struct SegmentDirectory {
    storage: StorageRef,
    root: PathBuf,
    /// Mappings by path relative to `root`, held weakly: a file is unmapped when its last
    /// reader goes.
    mappings: Arc<Mutex<HashMap<PathBuf, Weak<Mapping>>>>,
    /// Callbacks on a new `meta.json`.
    watchers: Arc<WatchCallbackList>,
    /// The first error of a call that writes, shared by every clone.
    write_failure: WriteFailure,
    /// Set by [`SegmentDirectory::retire`], shared by every clone and every file being
    /// written.
    retired: Retired,
}

/// Whether a directory was retired (see [`SegmentDirectory::retire`]).
#[derive(Clone, Default)]
struct Retired(Arc<AtomicBool>);

impl Retired {
    /// `Err` once the directory was retired.
    fn check(&self) -> io::Result<()> {
        match self.0.load(Ordering::Acquire) {
            true => Err(io::Error::other(RETIRED)),
            false => Ok(()),
        }
    }
}

/// The first error of a call that writes, as "<what> <path>: <error>".
#[derive(Clone, Default)]
struct WriteFailure(Arc<Mutex<Option<String>>>);

impl WriteFailure {
    /// Keeps `error` of `what` on `path` if it is the first; returns it unchanged.
    fn record(&self, what: &str, path: &Path, error: io::Error) -> io::Error {
        let mut first = self.0.lock();
        if first.is_none() {
            *first = Some(format!("{what} {}: {error}", path.display()));
        }
        error
    }
}

impl fmt::Debug for SegmentDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentDirectory")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// A segment file being written: positional writes at a running offset; synced when tantivy
/// terminates it.
struct SegmentFileWriter {
    file: FileRef,
    path: PathBuf,
    offset: u64,
    write_failure: WriteFailure,
    retired: Retired,
}

impl Write for SegmentFileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.retired.check()?;
        self.file
            .write_all_at(buf, self.offset)
            .map_err(|error| self.write_failure.record("writing", &self.path, error))?;
        self.offset += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TerminatingWrite for SegmentFileWriter {
    fn terminate_ref(&mut self, _: AntiCallToken) -> io::Result<()> {
        self.retired.check()?;
        self.file
            .sync_data(SyncSite::SegmentFile)
            .map_err(|error| self.write_failure.record("syncing", &self.path, error))
    }
}

/// A held [`StorageLock`], sized for tantivy's `DirectoryLock`.
struct HeldLock(#[allow(dead_code)] StorageLock);

fn open_read_error(error: io::Error, path: &Path) -> OpenReadError {
    if error.kind() == io::ErrorKind::NotFound {
        OpenReadError::FileDoesNotExist(path.to_path_buf())
    } else {
        OpenReadError::wrap_io_error(error, path.to_path_buf())
    }
}

impl SegmentDirectory {
    /// The directory at `root` of `storage`, which must exist.
    pub fn open(storage: StorageRef, root: &Path) -> Result<SegmentDirectory, OpenDirectoryError> {
        match storage.metadata(root) {
            Ok(metadata) if metadata.kind == EntryKind::Dir => {}
            Ok(_) => return Err(OpenDirectoryError::NotADirectory(root.to_path_buf())),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(OpenDirectoryError::DoesNotExist(root.to_path_buf()))
            }
            Err(error) => {
                return Err(OpenDirectoryError::IoError {
                    io_error: Arc::new(error),
                    directory_path: root.to_path_buf(),
                })
            }
        }
        // Temps of atomic writes a crashed process left (this process's are in use).
        durable_file::remove_stale_temps(&*storage, root, None);
        Ok(SegmentDirectory {
            storage,
            root: root.to_path_buf(),
            mappings: Arc::new(Mutex::new(HashMap::new())),
            watchers: Arc::new(WatchCallbackList::default()),
            write_failure: WriteFailure::default(),
            retired: Retired::default(),
        })
    }

    /// Makes every later call that writes through this directory (any clone, any file being
    /// written) fail with [`RETIRED`]: called when its engine closes (see the module
    /// documentation). Reads go on.
    pub fn retire(&self) {
        self.retired.0.store(true, Ordering::Release);
    }

    /// True once [`SegmentDirectory::retire`] was called (on any clone).
    pub fn is_retired(&self) -> bool {
        self.retired.0.load(Ordering::Acquire)
    }

    /// The first error of a call that wrote to this directory (through any clone), as
    /// "<what> <path>: <error>", if one failed.
    pub fn first_write_failure(&self) -> Option<String> {
        self.write_failure.0.lock().clone()
    }

    /// Drops from this process's resident set the pages of the mapped files whose path
    /// (relative to the directory) `select` accepts; the files stay mapped and readable, and a
    /// later read faults its pages in again from the page cache. Returns the bytes of the
    /// mappings advised (mapped, not necessarily resident). Errors of the advice are logged
    /// and skipped: the pages then simply stay resident.
    pub fn release_resident_pages(&self, select: impl Fn(&Path) -> bool) -> u64 {
        let selected: Vec<Arc<Mapping>> = {
            let mut mappings = self.mappings.lock();
            mappings.retain(|_, mapping| mapping.strong_count() > 0);
            mappings
                .iter()
                .filter(|(path, _)| select(path))
                .filter_map(|(_, mapping)| mapping.upgrade())
                .collect()
        };
        let mut advised = 0;
        for mapping in selected {
            match mapping.bytes.release_resident_pages() {
                Ok(bytes) => advised += bytes,
                Err(error) => tracing::debug!(%error, "releasing mapped pages"),
            }
        }
        advised
    }

    /// The live mapping of `path`, or a new one.
    fn map(&self, path: &Path) -> Result<Arc<Mapping>, OpenReadError> {
        let mut mappings = self.mappings.lock();
        if let Some(mapping) = mappings.get(path).and_then(Weak::upgrade) {
            return Ok(mapping);
        }
        let bytes = self
            .storage
            .map(&self.root.join(path))
            .map_err(|error| open_read_error(error, path))?;
        let mapping = Arc::new(Mapping { bytes });
        mappings.insert(path.to_path_buf(), Arc::downgrade(&mapping));
        Ok(mapping)
    }
}

impl Directory for SegmentDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        let mapping = self.map(path)?;
        let bytes = if mapping.bytes.is_empty() {
            OwnedBytes::empty()
        } else {
            OwnedBytes::new(MappedBytes(mapping))
        };
        Ok(Arc::new(bytes))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        if let Err(error) = self.retired.check() {
            return Err(DeleteError::IoError {
                io_error: Arc::new(error),
                filepath: path.to_path_buf(),
            });
        }
        self.storage
            .remove_file(&self.root.join(path))
            .map_err(|error| {
                if error.kind() == io::ErrorKind::NotFound {
                    DeleteError::FileDoesNotExist(path.to_path_buf())
                } else {
                    DeleteError::IoError {
                        io_error: Arc::new(self.write_failure.record(
                            "removing",
                            &self.root.join(path),
                            error,
                        )),
                        filepath: path.to_path_buf(),
                    }
                }
            })
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.storage
            .exists(&self.root.join(path))
            .map_err(|error| OpenReadError::wrap_io_error(error, path.to_path_buf()))
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        self.retired
            .check()
            .map_err(|error| OpenWriteError::wrap_io_error(error, path.to_path_buf()))?;
        let file = self
            .storage
            .open(&self.root.join(path), OpenMode::CreateNew)
            .map_err(|error| {
                if error.kind() == io::ErrorKind::AlreadyExists {
                    OpenWriteError::FileAlreadyExists(path.to_path_buf())
                } else {
                    let error = self
                        .write_failure
                        .record("creating", &self.root.join(path), error);
                    OpenWriteError::wrap_io_error(error, path.to_path_buf())
                }
            })?;
        // As `MmapDirectory`: the new entry is durable once tantivy calls `sync_directory`.
        Ok(BufWriter::new(Box::new(SegmentFileWriter {
            file,
            path: self.root.join(path),
            offset: 0,
            write_failure: self.write_failure.clone(),
            retired: self.retired.clone(),
        })))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.storage
            .read(&self.root.join(path))
            .map_err(|error| open_read_error(error, path))
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.retired.check()?;
        durable_file::replace_with_sites(
            &*self.storage,
            &self.root.join(path),
            data,
            SyncSite::SegmentAtomicContent,
            SyncSite::SegmentAtomicRename,
        )
        .map_err(|error| {
            self.write_failure
                .record("atomically writing", &self.root.join(path), error.source)
        })?;
        if path == Path::new("meta.json") {
            // Nothing waits on the broadcast: the callbacks run on their own thread.
            drop(self.watchers.broadcast());
        }
        Ok(())
    }

    fn sync_directory(&self) -> io::Result<()> {
        self.retired.check()?;
        self.storage
            .sync_dir(&self.root, SyncSite::SegmentDir)
            .map_err(|error| self.write_failure.record("syncing", &self.root, error))
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        let path = self.root.join(&lock.filepath);
        let deadline = Instant::now() + BLOCKING_LOCK_DEADLINE;
        loop {
            match self.storage.try_lock(&path) {
                Ok(Some(held)) => return Ok(DirectoryLock::from(Box::new(HeldLock(held)))),
                Ok(None) if lock.is_blocking && Instant::now() < deadline => {
                    std::thread::sleep(LOCK_RETRY_INTERVAL)
                }
                Ok(None) => return Err(LockError::LockBusy),
                Err(error) => return Err(LockError::wrap_io_error(error)),
            }
        }
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        Ok(self.watchers.subscribe(watch_callback))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident bytes of this process's mapping that starts at `bytes`, as `/proc/self/smaps`
    /// reports them (`Rss` of the mapping: pages in this process's page tables, not the page
    /// cache's, which `mincore` would report).
    fn resident_bytes(bytes: &[u8]) -> u64 {
        let start = format!("{:x}-", bytes.as_ptr() as usize);
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut lines = smaps.lines().skip_while(|line| !line.starts_with(&start));
        assert!(lines.next().is_some(), "the mapping is in smaps");
        let rss = lines
            .find(|line| line.starts_with("Rss:"))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap();
        rss.parse::<u64>().unwrap() * 1024
    }

    #[test]
    fn released_pages_leave_the_resident_set_and_read_the_same_bytes_again() {
        let dir = tempfile::tempdir().unwrap();
        let contents: Vec<u8> = (0..(4 << 20)).map(|n: u32| (n % 251) as u8).collect();
        std::fs::write(dir.path().join("a.term"), &contents).unwrap();
        std::fs::write(dir.path().join("a.store"), &contents).unwrap();
        let directory = SegmentDirectory::open(crate::storage::real(), dir.path()).unwrap();
        let term = directory.open_read(Path::new("a.term")).unwrap();
        let store = directory.open_read(Path::new("a.store")).unwrap();
        let (term, store) = (term.read_bytes().unwrap(), store.read_bytes().unwrap());
        assert_eq!(term.as_slice(), contents.as_slice());
        assert_eq!(store.as_slice(), contents.as_slice());
        let length = contents.len() as u64;
        // Reading every byte made every page resident.
        assert!(resident_bytes(term.as_slice()) > length * 9 / 10);

        let advised = directory.release_resident_pages(|path| {
            path.extension()
                .is_some_and(|extension| extension == "term")
        });
        assert_eq!(advised, contents.len() as u64);
        assert!(
            resident_bytes(term.as_slice()) < length / 10,
            "the released file's pages are gone from the resident set"
        );
        assert!(
            resident_bytes(store.as_slice()) > length * 9 / 10,
            "a file not selected keeps its pages"
        );
        // Reading again faults the same bytes back in.
        assert_eq!(term.as_slice(), contents.as_slice());
    }

    #[test]
    fn a_retired_directory_takes_no_writes_and_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kept.idx"), b"kept").unwrap();
        let directory = SegmentDirectory::open(crate::storage::real(), dir.path()).unwrap();
        // A file being written when the directory is retired (a merge's output).
        let mut writing = directory.open_write(Path::new("merging.idx")).unwrap();
        writing.write_all(&[1u8; 64 * 1024]).unwrap();
        let clone = directory.clone();
        clone.retire();
        let retired = |error: &io::Error| error.to_string().contains(RETIRED);
        let error = writing.write_all(&[2u8; 64 * 1024]).unwrap_err();
        assert!(retired(&error), "{error}");
        assert!(directory.open_write(Path::new("new.idx")).is_err());
        assert!(!dir.path().join("new.idx").exists());
        let error = directory
            .atomic_write(Path::new("meta.json"), b"{}")
            .unwrap_err();
        assert!(retired(&error), "{error}");
        assert!(!dir.path().join("meta.json").exists());
        assert!(directory.delete(Path::new("kept.idx")).is_err());
        assert!(directory.sync_directory().is_err());
        // Reads go on.
        let kept = directory.open_read(Path::new("kept.idx")).unwrap();
        assert_eq!(kept.read_bytes().unwrap().as_slice(), b"kept");
        assert_eq!(
            directory.atomic_read(Path::new("kept.idx")).unwrap(),
            b"kept"
        );
    }

    #[test]
    fn one_mapping_per_file_while_read_and_none_after() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.idx"), b"0123456789").unwrap();
        std::fs::write(dir.path().join("empty.idx"), b"").unwrap();
        let directory = SegmentDirectory::open(crate::storage::real(), dir.path()).unwrap();
        {
            let first = directory.open_read(Path::new("b.idx")).unwrap();
            let second = directory.open_read(Path::new("b.idx")).unwrap();
            let (first, second) = (first.read_bytes().unwrap(), second.read_bytes().unwrap());
            assert_eq!(first.as_slice().as_ptr(), second.as_slice().as_ptr());
            assert_eq!(directory.release_resident_pages(|_| true), 10);
        }
        assert_eq!(
            directory.release_resident_pages(|_| true),
            0,
            "nothing is advised once the last reader is gone"
        );
        let empty = directory.open_read(Path::new("empty.idx")).unwrap();
        assert!(empty.read_bytes().unwrap().is_empty());
        assert!(matches!(
            directory.open_read(Path::new("missing.idx")),
            Err(OpenReadError::FileDoesNotExist(_))
        ));
    }
}
