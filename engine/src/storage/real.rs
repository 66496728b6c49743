//! [`RealStorage`]: the file system, through `std::fs` and positional I/O. Each call is one
//! system call (or two: a directory sync opens the directory), so the seam costs a virtual call
//! and nothing else on the hot path. With the `failpoints` feature, every call that changes the
//! disk first evaluates the `storage::io` failpoint ([`fault`](super::fault)).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
#[cfg(feature = "failpoints")]
use std::path::PathBuf;

use super::fault::{check, IoOp};
use super::{
    DirEntry, DiskSpace, EntryKind, FileBytes, FileRef, Metadata, OpenMode, Storage, StorageFile,
    StorageLock, SyncSite,
};

/// The real file system (see the module documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct RealStorage;

#[derive(Debug)]
struct RealFile {
    file: File,
    /// What injected faults match on.
    #[cfg(feature = "failpoints")]
    path: PathBuf,
}

impl RealFile {
    /// Evaluates the `storage::io` failpoint for `op` on this file.
    #[inline]
    fn check(&self, op: IoOp) -> io::Result<()> {
        #[cfg(feature = "failpoints")]
        let path: &Path = &self.path;
        #[cfg(not(feature = "failpoints"))]
        let path = Path::new("");
        check(op, path)
    }
}

impl StorageFile for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check(IoOp::Write)?;
        self.file.write_all_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check(IoOp::SetLen)?;
        self.file.set_len(len)
    }

    fn sync_data(&self, _site: SyncSite) -> io::Result<()> {
        self.check(IoOp::SyncData)?;
        self.file.sync_data()
    }

    fn sync_all(&self, _site: SyncSite) -> io::Result<()> {
        self.check(IoOp::SyncAll)?;
        self.file.sync_all()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}

fn kind_of(file_type: fs::FileType) -> EntryKind {
    if file_type.is_dir() {
        EntryKind::Dir
    } else {
        EntryKind::File
    }
}

impl Storage for RealStorage {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        if mode != OpenMode::Read {
            check(IoOp::Create, path)?;
        }
        let mut options = OpenOptions::new();
        match mode {
            OpenMode::Read => options.read(true),
            OpenMode::ReadWrite => options.read(true).write(true),
            OpenMode::CreateTruncate => options.read(true).write(true).create(true).truncate(true),
            OpenMode::CreateNew => options.read(true).write(true).create_new(true),
        };
        Ok(Box::new(RealFile {
            file: options.open(path)?,
            #[cfg(feature = "failpoints")]
            path: path.to_path_buf(),
        }))
    }

    fn map(&self, path: &Path) -> io::Result<FileBytes> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            // Zero bytes cannot be mapped.
            return Ok(FileBytes::Owned(Vec::new().into()));
        }
        // SAFETY: the caller promises nobody modifies or truncates the file while the view
        // lives (tantivy's contract for segment files, the only files mapped).
        let map = unsafe { memmap2::Mmap::map(&file) }?;
        Ok(FileBytes::Mapped(map))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        check(IoOp::Rename, to)?;
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        check(IoOp::Remove, path)?;
        fs::remove_file(path)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        check(IoOp::CreateDir, path)?;
        fs::create_dir(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        check(IoOp::Remove, path)?;
        fs::remove_dir_all(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let kind = match entry.file_type() {
                Ok(file_type) => kind_of(file_type),
                // Gone between the listing and the stat.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            entries.push(DirEntry { name, kind });
        }
        Ok(entries)
    }

    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        let metadata = fs::metadata(path)?;
        Ok(Metadata {
            kind: kind_of(metadata.file_type()),
            len: if metadata.is_dir() { 0 } else { metadata.len() },
        })
    }

    fn sync_dir(&self, dir: &Path, _site: SyncSite) -> io::Result<()> {
        check(IoOp::SyncDir, dir)?;
        File::open(dir)?.sync_all()
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<StorageLock>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            // The lock lives as long as the descriptor.
            Ok(()) => Ok(Some(Box::new(file))),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(errno) => Err(errno.into()),
        }
    }

    fn disk_space(&self, path: &Path) -> io::Result<Option<DiskSpace>> {
        let stat = rustix::fs::statvfs(path)?;
        Ok(Some(DiskSpace {
            total_bytes: stat.f_blocks.saturating_mul(stat.f_frsize),
            available_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("writer.lock");
        let held = RealStorage.try_lock(&path).unwrap();
        assert!(held.is_some());
        assert!(RealStorage.try_lock(&path).unwrap().is_none());
        drop(held);
        assert!(RealStorage.try_lock(&path).unwrap().is_some());
    }

    #[test]
    fn files_and_directories_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let storage = RealStorage;
        let sub = dir.path().join("sub");
        storage.create_dir(&sub).unwrap();
        let file = storage.open(&sub.join("a"), OpenMode::CreateNew).unwrap();
        file.write_all_at(b"world", 6).unwrap();
        file.write_all_at(b"hello", 0).unwrap();
        file.sync_data(SyncSite::StateFileContent).unwrap();
        assert_eq!(storage.read(&sub.join("a")).unwrap(), b"hello\0world");
        assert!(storage.open(&sub.join("a"), OpenMode::CreateNew).is_err());
        storage.rename(&sub.join("a"), &sub.join("b")).unwrap();
        storage.sync_dir(&sub, SyncSite::StateFileRename).unwrap();
        assert_eq!(
            storage.list(&sub).unwrap(),
            vec![DirEntry {
                name: "b".into(),
                kind: EntryKind::File
            }]
        );
        assert_eq!(storage.metadata(&sub.join("b")).unwrap().len, 11);
        assert_eq!(&*storage.map(&sub.join("b")).unwrap(), b"hello\0world");
        storage.remove_dir_all(&sub).unwrap();
        assert!(!storage.exists(&sub).unwrap());
    }
}
