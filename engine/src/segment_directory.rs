//! `SegmentDirectory`: the tantivy `Directory` of a shard's index. It is tantivy's
//! `MmapDirectory` for everything but reads; a read maps the file itself and keeps a weak
//! handle on the mapping, so that the engine can let go of the resident pages of files it has
//! finished scanning ([`SegmentDirectory::release_resident_pages`]).
//!
//! Why: a mapped page a read touched stays in the process's resident set for as long as the
//! file is mapped, whether or not anything reads it again. The engine scans whole files that
//! nothing needs resident afterwards (the id filter built over a new segment's `_id` terms, the
//! source segments a merge reads), and during a bulk load those pages grew the node's RSS with
//! the index (hundreds of MiB per 10 M documents) although the kernel could have the same bytes
//! back from its page cache at the cost of a minor fault.
//!
//! Guarantees:
//! - Releasing never changes what a read sees: mappings are shared, read-only maps of segment
//!   files, which tantivy writes once and never modifies; `MADV_DONTNEED` on such a mapping
//!   only drops its page-table entries, and the next access maps the same bytes again from the
//!   page cache (or the file).
//! - A release only advises mappings it holds alive for the call (the registry is weak, the
//!   release upgrades), so it can never advise an address range that was unmapped and reused.
//! - One mapping per file while any reader holds it, as `MmapDirectory` does.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use memmap2::{Mmap, UncheckedAdvice};
use parking_lot::Mutex;
use tantivy::directory::error::{
    DeleteError, LockError, OpenDirectoryError, OpenReadError, OpenWriteError,
};
use tantivy::directory::{
    DirectoryLock, FileHandle, Lock, MmapDirectory, OwnedBytes, WatchCallback, WatchHandle,
    WritePtr,
};
use tantivy::Directory;

/// A mapped file, shared by every reader of it.
struct Mapping {
    map: Mmap,
}

/// The bytes of a [`Mapping`], as tantivy's `OwnedBytes` holds them.
struct MappedBytes(Arc<Mapping>);

impl Deref for MappedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0.map
    }
}

// SAFETY: the bytes are those of the mapping, which lives (at a fixed address) as long as the
// `Arc` does; moving `MappedBytes` moves the pointer, not the bytes.
unsafe impl stable_deref_trait::StableDeref for MappedBytes {}

/// A shard's tantivy directory (see the module documentation).
#[derive(Clone)]
pub struct SegmentDirectory {
    inner: MmapDirectory,
    root: PathBuf,
    /// Mappings by path relative to `root`, held weakly: a file is unmapped when its last
    /// reader goes.
    mappings: Arc<Mutex<HashMap<PathBuf, Weak<Mapping>>>>,
}

impl fmt::Debug for SegmentDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentDirectory")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl SegmentDirectory {
    /// The directory at `root`, which must exist.
    pub fn open(root: &Path) -> Result<SegmentDirectory, OpenDirectoryError> {
        Ok(SegmentDirectory {
            inner: MmapDirectory::open(root)?,
            root: root.to_path_buf(),
            mappings: Arc::new(Mutex::new(HashMap::new())),
        })
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
            // SAFETY: a shared, read-only mapping of a file nobody modifies (see the module
            // documentation), alive for the call through `mapping`: dropping its pages loses
            // nothing and the next access reads the same bytes.
            match unsafe { mapping.map.unchecked_advise(UncheckedAdvice::DontNeed) } {
                Ok(()) => advised += mapping.map.len() as u64,
                Err(error) => tracing::debug!(%error, "releasing mapped pages"),
            }
        }
        advised
    }

    /// The live mapping of `path`, or a new one.
    fn map(&self, path: &Path) -> Result<Option<Arc<Mapping>>, OpenReadError> {
        let mut mappings = self.mappings.lock();
        if let Some(mapping) = mappings.get(path).and_then(Weak::upgrade) {
            return Ok(Some(mapping));
        }
        let full_path = self.root.join(path);
        let file = File::open(&full_path).map_err(|error| {
            if error.kind() == io::ErrorKind::NotFound {
                OpenReadError::FileDoesNotExist(path.to_path_buf())
            } else {
                OpenReadError::wrap_io_error(error, path.to_path_buf())
            }
        })?;
        let length = file
            .metadata()
            .map_err(|error| OpenReadError::wrap_io_error(error, path.to_path_buf()))?
            .len();
        if length == 0 {
            // Zero bytes cannot be mapped.
            return Ok(None);
        }
        // SAFETY: segment files are written once and never modified or truncated while an
        // index references them (tantivy's contract for every mmap directory).
        let map = unsafe { Mmap::map(&file) }
            .map_err(|error| OpenReadError::wrap_io_error(error, path.to_path_buf()))?;
        let mapping = Arc::new(Mapping { map });
        mappings.insert(path.to_path_buf(), Arc::downgrade(&mapping));
        Ok(Some(mapping))
    }
}

impl Directory for SegmentDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        let bytes = match self.map(path)? {
            Some(mapping) => OwnedBytes::new(MappedBytes(mapping)),
            None => OwnedBytes::empty(),
        };
        Ok(Arc::new(bytes))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.inner.delete(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        self.inner.open_write(path)
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.inner.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.inner.atomic_write(path, data)
    }

    fn sync_directory(&self) -> io::Result<()> {
        self.inner.sync_directory()
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        self.inner.acquire_lock(lock)
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(watch_callback)
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
        let directory = SegmentDirectory::open(dir.path()).unwrap();
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
    fn one_mapping_per_file_while_read_and_none_after() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.idx"), b"0123456789").unwrap();
        std::fs::write(dir.path().join("empty.idx"), b"").unwrap();
        let directory = SegmentDirectory::open(dir.path()).unwrap();
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
