//! Durable file mechanics: the one place where Tandem's crates replace a state file atomically,
//! fsync a directory, create a directory durably and remove a file durably.
//!
//! Every state file of every crate (index metadata, retention leases, markers, the node's
//! identity and cluster settings, the follow state) is written with [`replace_atomically`];
//! every directory created to hold durable data is created with [`create_dir_all`]. The
//! translog keeps its own generation and checkpoint files (they are appended to and
//! preallocated, not replaced) but fsyncs its directory with [`sync_dir`].
//!
//! # Assumptions about the medium
//!
//! As redb states them: a successful `fsync` of a file makes its data durable; a `rename`
//! within one directory is atomic (a reader or a crash sees the old entry or the new one, never
//! neither), and it survives a power cut once the directory is fsynced. The same holds for the
//! creation and the removal of a directory entry.
//!
//! # Temp files
//!
//! [`replace_atomically`] writes `<name>.tmp-<process tag>-<counter>` beside the target, where
//! the process tag is random per process and the counter is unique per call: two writers of the
//! same file (threads of one process) never share a temp file. A temp file is never read: every
//! reader opens the target's exact name, so a temp file left by a crash is ignored. It is
//! removed by the next [`replace_atomically`] of the same target, which removes every temp of
//! that target that another process (an earlier run) left, and never the temps of its own
//! process, which may belong to a replace running on another thread. This relies on one process
//! writing a directory at a time (one node owns its data directory); if two processes did
//! write the same file, one's temp could be removed under it, and its rename would fail with an
//! error: the target still holds a complete version.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::error::EngineError;
use crate::storage::{EntryKind, FileRef, OpenMode, Storage, SyncSite};

/// Separates a target's name from the suffix of its temp files.
const TEMP_MARKER: &str = ".tmp";

/// How many temp names a replace tries before giving up (a name is only taken when a stale
/// temp of this very process and counter exists, which needs a tag collision).
const TEMP_NAME_ATTEMPTS: u32 = 4;

/// An I/O failure of a durable file operation, with the path it concerns (the temp file, the
/// target, or the directory, whichever the failing call was on).
#[derive(Debug, thiserror::Error)]
#[error("I/O error on {path}: {source}")]
pub struct DurableFileError {
    /// The file or directory the failing call was on.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

impl DurableFileError {
    fn new(path: impl Into<PathBuf>, source: io::Error) -> Self {
        DurableFileError {
            path: path.into(),
            source,
        }
    }
}

impl From<DurableFileError> for EngineError {
    fn from(error: DurableFileError) -> Self {
        EngineError::Io {
            path: error.path,
            source: error.source,
        }
    }
}

/// Result of the durable file operations.
pub type Result<T> = std::result::Result<T, DurableFileError>;

/// Replaces the file at `path` with `bytes` atomically and durably. The directory holding
/// `path` must exist.
///
/// Writes a temp file unique to this call beside `path`, fsyncs it, renames it over `path` and
/// fsyncs the directory.
///
/// Guarantees:
/// - On `Ok`, `path` holds exactly `bytes`, and keeps them across a crash or a power cut.
/// - A crash or power cut at any moment leaves `path` with its old content or with `bytes`,
///   never a mix, never a partial file (and no file only if there was none before).
/// - On `Err`, `path` holds its old content or `bytes`; the latter only when the failure was
///   the directory fsync, after which the new content may not survive a power cut. The temp
///   file is removed (best effort).
/// - Concurrent replaces of the same `path` from threads of one process each write their own
///   temp file; the last rename wins and every reader sees one complete version.
/// - Temps of `path` left by another process (a crashed earlier run) are removed first; see
///   the module docs.
pub fn replace_atomically(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let name = file_name(path)?;
    remove_stale_temps(storage, dir, Some(name));
    replace_with_sites(
        storage,
        path,
        bytes,
        SyncSite::StateFileContent,
        SyncSite::StateFileRename,
    )
}

/// [`replace_atomically`] with the sync sites of the caller, and without removing the temps
/// other processes left: for a caller that removes them itself ([`remove_stale_temps`]) and
/// replaces often (tantivy's `meta.json` and `.managed.json`, written concurrently from several
/// threads, each through its own temp file).
pub fn replace_with_sites(
    storage: &dyn Storage,
    path: &Path,
    bytes: &[u8],
    content_site: SyncSite,
    rename_site: SyncSite,
) -> Result<()> {
    let dir = parent_dir(path);
    let name = file_name(path)?;
    let (temp_path, file) = create_temp(storage, dir, name)?;
    let written = file
        .write_all_at(bytes, 0)
        .and_then(|()| file.sync_all(content_site))
        .map_err(|source| DurableFileError::new(&temp_path, source));
    drop(file);
    let renamed = written.and_then(|()| {
        storage
            .rename(&temp_path, path)
            .map_err(|e| DurableFileError::new(path, e))
    });
    if let Err(error) = renamed {
        let _ = storage.remove_file(&temp_path);
        return Err(error);
    }
    sync_dir(storage, dir, rename_site)
}

/// fsyncs the directory `dir`: on `Ok`, every entry created, renamed or removed in `dir` before
/// the call (files and subdirectories alike) survives a power cut. Says nothing of the
/// contents of those files, which need their own fsync.
pub fn sync_dir(storage: &dyn Storage, dir: &Path, site: SyncSite) -> Result<()> {
    storage
        .sync_dir(dir, site)
        .map_err(|source| DurableFileError::new(dir, source))
}

/// Creates the directory `path` and every missing ancestor, durably: each directory created is
/// followed by an fsync of its parent, so on `Ok` the whole path exists and survives a power
/// cut. An existing directory is not an error (nothing is fsynced for it), and neither is one
/// created concurrently by another caller (its parent is fsynced all the same, so this call's
/// guarantee does not depend on the other caller having finished).
pub fn create_dir_all(storage: &dyn Storage, path: &Path) -> Result<()> {
    let mut missing = Vec::new();
    for ancestor in path.ancestors() {
        if ancestor.as_os_str().is_empty() {
            break;
        }
        match storage.metadata(ancestor) {
            Ok(metadata) if metadata.kind == EntryKind::Dir => break,
            Ok(_) => {
                return Err(DurableFileError::new(
                    ancestor,
                    io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "exists and is not a directory",
                    ),
                ))
            }
            // NotADirectory: a file is in the way further up; the walk reaches it and names it.
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                missing.push(ancestor)
            }
            Err(error) => return Err(DurableFileError::new(ancestor, error)),
        }
    }
    for directory in missing.into_iter().rev() {
        match storage.create_dir(directory) {
            Ok(()) => {}
            Err(error)
                if error.kind() == io::ErrorKind::AlreadyExists && storage.is_dir(directory) => {}
            Err(error) => return Err(DurableFileError::new(directory, error)),
        }
        sync_dir(storage, parent_dir(directory), SyncSite::CreateDir)?;
    }
    Ok(())
}

/// Removes the file at `path` and fsyncs its directory: on `Ok` the file is gone and stays
/// gone across a power cut. A file that does not exist is not an error (the directory is
/// fsynced all the same, in case an earlier removal was not).
pub fn remove_file(storage: &dyn Storage, path: &Path) -> Result<()> {
    match storage.remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(DurableFileError::new(path, error)),
    }
    sync_dir(storage, parent_dir(path), SyncSite::RemoveFile)
}

/// Reads the whole file at `path`; `Ok(None)` when there is none.
pub fn read_if_exists(storage: &dyn Storage, path: &Path) -> Result<Option<Vec<u8>>> {
    match storage.read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(DurableFileError::new(path, error)),
    }
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

fn file_name(path: &Path) -> Result<&str> {
    path.file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| {
            DurableFileError::new(
                path,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a state file needs a UTF-8 file name",
                ),
            )
        })
}

/// A random tag of this process, so that its temp files are told apart from those of an
/// earlier run (a process id can be reused, always so in a container).
fn process_tag() -> u64 {
    static TAG: OnceLock<u64> = OnceLock::new();
    *TAG.get_or_init(rand::random)
}

/// The prefix of every temp file of the target `name`.
fn temp_prefix(name: &str) -> String {
    format!("{name}{TEMP_MARKER}-")
}

/// Creates a temp file for the target `name` in `dir` with a name no other call uses.
fn create_temp(storage: &dyn Storage, dir: &Path, name: &str) -> Result<(PathBuf, FileRef)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut attempt = 0;
    loop {
        let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp_path = dir.join(format!(
            "{}{:016x}-{counter}",
            temp_prefix(name),
            process_tag()
        ));
        match storage.open(&temp_path, OpenMode::CreateNew) {
            Ok(file) => return Ok((temp_path, file)),
            Err(error)
                if error.kind() == io::ErrorKind::AlreadyExists
                    && attempt + 1 < TEMP_NAME_ATTEMPTS =>
            {
                attempt += 1;
            }
            Err(error) => return Err(DurableFileError::new(&temp_path, error)),
        }
    }
}

/// Removes the temp files in `dir` that another process left, of the target `name` or (with
/// `None`) of every target: every `<name>.tmp` (the single fixed temp name of earlier versions
/// of the file format) and every `<name>.tmp-<tag>-<counter>` whose tag is not this process's.
/// Failures are logged, not returned: a stale temp costs disk space, never correctness.
pub fn remove_stale_temps(storage: &dyn Storage, dir: &Path, name: Option<&str>) {
    let entries = match storage.list(dir) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot list the directory to remove stale temp files");
            return;
        }
    };
    let own_tag = format!("{:016x}-", process_tag());
    let is_stale = |entry_name: &str| -> bool {
        let Some(name) = name else {
            // Any target: `<target>.tmp-<tag>-<counter>` with another tag.
            return entry_name
                .split_once(&format!("{TEMP_MARKER}-"))
                .is_some_and(|(_, suffix)| !suffix.starts_with(&own_tag));
        };
        entry_name == format!("{name}{TEMP_MARKER}")
            || entry_name
                .strip_prefix(&temp_prefix(name))
                .is_some_and(|suffix| !suffix.starts_with(&own_tag))
    };
    for entry in entries {
        let entry_name = entry.name.as_str();
        let stale = is_stale(entry_name);
        if !stale {
            continue;
        }
        let stale_path = dir.join(entry_name);
        match storage.remove_file(&stale_path) {
            Ok(()) => {
                tracing::info!(path = %stale_path.display(), "removed a temp file left by an interrupted replace");
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(path = %stale_path.display(), %error, "cannot remove a stale temp file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::RealStorage;
    use std::fs;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replace_leaves_the_new_content_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        replace_atomically(&RealStorage, &path, b"first").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first");
        replace_atomically(&RealStorage, &path, b"second, longer than the first").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second, longer than the first");
        replace_atomically(&RealStorage, &path, b"").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"");
        assert_eq!(names_in(dir.path()), ["state.json"]);
    }

    /// A reader racing with replaces sees one complete version each time, never a partial or
    /// mixed file, and never a missing one.
    #[test]
    fn readers_see_the_old_or_the_new_content_never_a_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let versions: Vec<Vec<u8>> = (0..40u8)
            .map(|version| vec![b'a' + version % 26; 64 * 1024 + version as usize])
            .collect();
        replace_atomically(&RealStorage, &path, &versions[0]).unwrap();
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                for version in &versions[1..] {
                    replace_atomically(&RealStorage, &path, version).unwrap();
                }
            });
            while !writer.is_finished() {
                let read = fs::read(&path).unwrap();
                assert!(
                    versions.contains(&read),
                    "read {} bytes that are no version written",
                    read.len()
                );
            }
        });
        assert_eq!(&fs::read(&path).unwrap(), versions.last().unwrap());
    }

    #[test]
    fn concurrent_writers_of_one_file_each_write_a_complete_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index_metadata.json");
        let writers = 8;
        let rounds = 25;
        let content = |writer: usize, round: usize| -> Vec<u8> {
            format!("writer {writer} round {round} ")
                .repeat(500)
                .into_bytes()
        };
        std::thread::scope(|scope| {
            for writer in 0..writers {
                let path = &path;
                scope.spawn(move || {
                    for round in 0..rounds {
                        replace_atomically(&RealStorage, path, &content(writer, round)).unwrap();
                    }
                });
            }
        });
        let last = fs::read(&path).unwrap();
        assert!(
            (0..writers).any(|writer| last == content(writer, rounds - 1)),
            "the file holds the last round of one writer"
        );
        assert_eq!(names_in(dir.path()), ["index_metadata.json"]);
    }

    /// A temp file a crash left (from another process, or the fixed name of the earlier format)
    /// is never read, and the next replace of its target removes it; temps of other targets
    /// and of this process's replaces in flight are left alone.
    #[test]
    fn stale_temps_are_ignored_by_readers_and_removed_by_the_next_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        replace_atomically(&RealStorage, &path, b"complete").unwrap();
        let crashed = format!("state.json.tmp-{:016x}-7", process_tag().wrapping_add(1));
        fs::write(dir.path().join(&crashed), b"partial").unwrap();
        fs::write(dir.path().join("state.json.tmp"), b"partial").unwrap();
        let in_flight = format!("state.json.tmp-{:016x}-999999999", process_tag());
        fs::write(dir.path().join(&in_flight), b"being written").unwrap();
        let other_target = "other.json.tmp-0000000000000000-1";
        fs::write(dir.path().join(other_target), b"partial").unwrap();

        assert_eq!(fs::read(&path).unwrap(), b"complete");
        replace_atomically(&RealStorage, &path, b"next").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"next");
        let mut expected = vec![
            in_flight,
            other_target.to_string(),
            "state.json".to_string(),
        ];
        expected.sort();
        assert_eq!(names_in(dir.path()), expected);
    }

    #[test]
    fn a_failed_replace_keeps_the_old_content_and_removes_its_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        replace_atomically(&RealStorage, &path, b"old").unwrap();
        // A directory at the target's name makes the rename fail after the temp is written.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("keep"), b"x").unwrap();
        let error = replace_atomically(&RealStorage, &blocked, b"new").unwrap_err();
        assert_eq!(error.path, blocked);
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(names_in(dir.path()), ["blocked", "state.json"]);
    }

    #[test]
    fn replace_needs_an_existing_directory_and_names_the_temp_in_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("state.json");
        let error = replace_atomically(&RealStorage, &path, b"x").unwrap_err();
        assert_eq!(error.source.kind(), io::ErrorKind::NotFound);
        assert!(error.path.starts_with(dir.path().join("missing")));
        let engine_error = EngineError::from(error);
        assert!(matches!(engine_error, EngineError::Io { .. }));
    }

    #[test]
    fn create_dir_all_creates_nested_directories_and_accepts_existing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir
            .path()
            .join("indices")
            .join("logs")
            .join("0")
            .join("index");
        create_dir_all(&RealStorage, &nested).unwrap();
        assert!(nested.is_dir());
        create_dir_all(&RealStorage, &nested).unwrap();
        create_dir_all(&RealStorage, dir.path()).unwrap();
        let sibling = dir.path().join("indices").join("logs").join("1");
        create_dir_all(&RealStorage, &sibling).unwrap();
        assert!(sibling.is_dir());
    }

    #[test]
    fn create_dir_all_refuses_a_file_in_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        let error = create_dir_all(&RealStorage, &file.join("below")).unwrap_err();
        assert_eq!(error.path, file);
    }

    #[test]
    fn concurrent_creators_of_one_directory_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a").join("b").join("c");
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| create_dir_all(&RealStorage, &nested).unwrap());
            }
        });
        assert!(nested.is_dir());
    }

    #[test]
    fn remove_file_removes_and_accepts_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("closed");
        replace_atomically(&RealStorage, &marker, b"1").unwrap();
        remove_file(&RealStorage, &marker).unwrap();
        assert!(!marker.exists());
        remove_file(&RealStorage, &marker).unwrap();
    }

    #[test]
    fn sync_dir_names_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let error = sync_dir(&RealStorage, &missing, SyncSite::StateFileRename).unwrap_err();
        assert_eq!(error.path, missing);
    }
}
