//! The storage seam: every byte Tandem writes itself goes through [`Storage`] (translog
//! generations and checkpoints, the lease log, index, node and follow state files, markers,
//! recovery temp files and renames), and tantivy's segment files through
//! [`SegmentDirectory`](crate::segment_directory::SegmentDirectory), a tantivy `Directory` over
//! the same trait. [`RealStorage`] is the file system; [`SimStorage`] is an in-memory disk that
//! keeps what was made durable apart from what was only written, so that a test can cut the
//! power at any storage call and reopen on what survived.
//!
//! # Contract (what a caller may rely on, and nothing more)
//!
//! These are the assumptions of redb and of the ALICE study, and the simulated disk grants
//! exactly these:
//! - [`StorageFile::sync_data`] / [`StorageFile::sync_all`] on `Ok`: every byte written to the
//!   file before the call, and its length, survive a power cut. Nothing else does: an unsynced
//!   write may be lost, or (in [`CutMode::Torn`]) partly kept, in 4 KiB pages, in any subset.
//! - A directory entry (a created file or directory, a rename, a removal) survives a power cut
//!   once its directory was synced with [`Storage::sync_dir`]; before that it may or may not,
//!   independently of the other entries of the directory and of their order.
//! - [`Storage::rename`] within a directory is atomic: after a power cut the target names the old
//!   file or the new one, never neither and never a mix.
//!
//! # Sync call sites
//!
//! Every sync names its [`SyncSite`], the place in the code that makes something durable. The
//! real file system ignores the name; the simulated disk can turn any single site into a no-op
//! ([`SimStorage::disable_sync`]), so that a test shows the site is needed: with it off, the
//! power-loss test must find a lost write.

mod fault;
mod real;
mod sim;

use std::fmt;
use std::io;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

pub use fault::IoOp;
pub use real::RealStorage;
pub use sim::{CutMode, SimJournal, SimStorage, SimStorageStats};

/// A shared handle on a storage backend.
pub type StorageRef = Arc<dyn Storage>;

/// The real file system, shared by every caller that is not told otherwise.
pub fn real() -> StorageRef {
    static REAL: std::sync::OnceLock<StorageRef> = std::sync::OnceLock::new();
    REAL.get_or_init(|| Arc::new(RealStorage)).clone()
}

/// How [`Storage::open`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, read only.
    Read,
    /// An existing file, read and write.
    ReadWrite,
    /// Read and write; created when absent, truncated to zero bytes when present.
    CreateTruncate,
    /// Read and write; a new file, `AlreadyExists` when the name is taken.
    CreateNew,
}

/// What a directory entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// One entry of [`Storage::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name within its directory (not UTF-8 names are skipped by every backend:
    /// Tandem never writes one).
    pub name: String,
    /// A file or a directory.
    pub kind: EntryKind,
}

/// What [`Storage::metadata`] reports of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// A file or a directory.
    pub kind: EntryKind,
    /// Length of a file in bytes (0 for a directory).
    pub len: u64,
}

/// The named places that make data durable; see the module documentation. Each variant is one
/// sync call in the code (a helper called from many places is one site).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SyncSite {
    /// `durable_file::replace_atomically`: the temp file's content, before its rename.
    StateFileContent,
    /// `durable_file::replace_atomically`: the directory, after the rename.
    StateFileRename,
    /// `durable_file::create_dir_all`: the parent of each directory created.
    CreateDir,
    /// `durable_file::remove_file`: the directory, after the removal.
    RemoveFile,
    /// Translog: a new generation file's header.
    TranslogGenerationHeader,
    /// Translog: the records of a group commit (the acknowledgement of every write).
    TranslogRecords,
    /// Translog: each of the two checkpoint slots written durably (roll, trim, open).
    TranslogCheckpoint,
    /// Translog: the current generation at open, before the checkpoint claims the frames found
    /// past its synced offset (written before a process crash, maybe not durable) and any cut.
    TranslogOpenTail,
    /// Translog: a rolled generation cut to its logical end.
    TranslogRolledGeneration,
    /// Translog: the directory, after a new translog or a new generation was created.
    TranslogDirCreate,
    /// Lease log: a change appended.
    LeaseLogAppend,
    /// Segment files: a file tantivy finished writing.
    SegmentFile,
    /// Segment files: the directory, when tantivy asks (before it writes its `meta.json`).
    SegmentDir,
    /// Segment files: an atomically replaced file's content (`meta.json`, `.managed.json`).
    SegmentAtomicContent,
    /// Segment files: the directory, after an atomic replace's rename.
    SegmentAtomicRename,
    /// Recovery: a copied segment file, before its rename into place.
    RecoveryFile,
    /// Recovery: the index directory, after the copied files were renamed into place.
    RecoveryDir,
}

impl SyncSite {
    /// Every site, in declaration order.
    pub const ALL: [SyncSite; 17] = [
        SyncSite::StateFileContent,
        SyncSite::StateFileRename,
        SyncSite::CreateDir,
        SyncSite::RemoveFile,
        SyncSite::TranslogGenerationHeader,
        SyncSite::TranslogRecords,
        SyncSite::TranslogCheckpoint,
        SyncSite::TranslogOpenTail,
        SyncSite::TranslogRolledGeneration,
        SyncSite::TranslogDirCreate,
        SyncSite::LeaseLogAppend,
        SyncSite::SegmentFile,
        SyncSite::SegmentDir,
        SyncSite::SegmentAtomicContent,
        SyncSite::SegmentAtomicRename,
        SyncSite::RecoveryFile,
        SyncSite::RecoveryDir,
    ];

    /// The site by its `Debug` name (for test switches set from the environment).
    pub fn from_name(name: &str) -> Option<SyncSite> {
        SyncSite::ALL
            .into_iter()
            .find(|site| format!("{site:?}") == name)
    }
}

/// A read-only view of a whole file, as [`Storage::map`] returns it: a memory map on the real
/// file system, a copy in the simulation.
pub enum FileBytes {
    /// A shared, read-only map of the file.
    Mapped(memmap2::Mmap),
    /// The file's bytes in memory.
    Owned(Arc<[u8]>),
}

impl FileBytes {
    /// Drops the view's pages from the process's resident set (a map only; the next access
    /// faults them in again from the page cache). Returns the bytes advised.
    pub fn release_resident_pages(&self) -> io::Result<u64> {
        match self {
            FileBytes::Mapped(map) => {
                // SAFETY: a shared, read-only map of a file nobody modifies while it is mapped
                // (segment files are written once); dropping its pages loses nothing and the
                // next access reads the same bytes.
                unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) }?;
                Ok(map.len() as u64)
            }
            FileBytes::Owned(_) => Ok(0),
        }
    }
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(map) => map,
            FileBytes::Owned(bytes) => bytes,
        }
    }
}

impl fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileBytes")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// Size and free space of a file system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskSpace {
    /// Size of the file system.
    pub total_bytes: u64,
    /// Bytes an unprivileged user may still write.
    pub available_bytes: u64,
}

/// A held lock of [`Storage::try_lock`]; dropping it releases the lock.
pub type StorageLock = Box<dyn Send + Sync>;

/// An open file of a [`Storage`]. Positional reads and writes only (no cursor), so one handle
/// may be shared between threads.
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// Reads at most `buf.len()` bytes at `offset`; returns how many were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Writes all of `buf` at `offset`, growing the file when needed (a gap reads as zeros).
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;

    /// True when the file has no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Cuts or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Makes the file's data and length durable (`fdatasync`).
    fn sync_data(&self, site: SyncSite) -> io::Result<()>;

    /// Makes the file's data and all its metadata durable (`fsync`).
    fn sync_all(&self, site: SyncSite) -> io::Result<()>;

    /// Fills `buf` from `offset`; `UnexpectedEof` when the file ends first.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file ends before the bytes asked for",
                    ))
                }
                Ok(read) => {
                    buf = &mut buf[read..];
                    offset += read as u64;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// A boxed [`StorageFile`].
pub type FileRef = Box<dyn StorageFile>;

/// A storage backend; see the module documentation for the contract. Paths are absolute or
/// relative to the process's working directory, as the caller gives them.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Opens the file at `path`.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef>;

    /// A read-only view of the whole file at `path`, which nobody may modify while the view
    /// lives (segment files are written once).
    fn map(&self, path: &Path) -> io::Result<FileBytes>;

    /// Renames `from` to `to` (same directory), replacing `to` atomically if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes the file at `path` (`NotFound` when there is none).
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Creates the directory `path`, whose parent must exist (`AlreadyExists` when it does).
    fn create_dir(&self, path: &Path) -> io::Result<()>;

    /// Removes the directory `path` and everything under it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;

    /// The entries of the directory `dir`, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>>;

    /// What `path` is (`NotFound` when nothing is there).
    fn metadata(&self, path: &Path) -> io::Result<Metadata>;

    /// Makes the entries of the directory `dir` (created, renamed and removed names) durable.
    fn sync_dir(&self, dir: &Path, site: SyncSite) -> io::Result<()>;

    /// Takes the exclusive lock named by `path` (its file is created when absent); `None` when
    /// another holder has it. Held until the returned guard is dropped; a crashed process holds
    /// nothing.
    fn try_lock(&self, path: &Path) -> io::Result<Option<StorageLock>>;

    /// Size and free space of the file system holding `path`; `None` when the backend has no
    /// such limit (the simulated disk).
    fn disk_space(&self, path: &Path) -> io::Result<Option<DiskSpace>>;

    /// The whole content of the file at `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let file = self.open(path, OpenMode::Read)?;
        let len = usize::try_from(file.len()?)
            .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "file too large to read"))?;
        let mut bytes = vec![0; len];
        file.read_exact_at(&mut bytes, 0)?;
        Ok(bytes)
    }

    /// True when something is at `path`.
    fn exists(&self, path: &Path) -> io::Result<bool> {
        match self.metadata(path) {
            Ok(_) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// True when a directory is at `path` (false for nothing, a file, or an error).
    fn is_dir(&self, path: &Path) -> bool {
        matches!(
            self.metadata(path),
            Ok(Metadata {
                kind: EntryKind::Dir,
                ..
            })
        )
    }

    /// True when a file is at `path` (false for nothing, a directory, or an error).
    fn is_file(&self, path: &Path) -> bool {
        matches!(
            self.metadata(path),
            Ok(Metadata {
                kind: EntryKind::File,
                ..
            })
        )
    }
}

/// A [`StorageFile`] read sequentially from a position (for decoders that take `io::Read`).
#[derive(Debug)]
pub struct FileReader<'a> {
    file: &'a dyn StorageFile,
    position: u64,
}

impl<'a> FileReader<'a> {
    /// Reads `file` from `position` on.
    pub fn new(file: &'a dyn StorageFile, position: u64) -> FileReader<'a> {
        FileReader { file, position }
    }
}

impl io::Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.file.read_at(buf, self.position)?;
        self.position += read as u64;
        Ok(read)
    }
}
