//! [`SharedFile`]: one JSON security file (`<data>/security/<name>`) that the running node and
//! the command line (`tandem users`) both change.
//!
//! Guarantees:
//! - `<data>/security` and its files are readable by the node's operating-system user only
//!   (modes 0700 and 0600);
//! - every change is a read-modify-write under an exclusive lock (`<name>.lock`, `flock`) from
//!   the file as it is on disk, replaced atomically and durably
//!   (`durable_file::replace_atomically`): two writers never lose each other's change;
//! - a change made by another process is seen at the next read (the file's stamp, one `stat`,
//!   is compared on every read) and bumps [`SharedFile::generation`];
//! - a file that does not parse or fails its validation is refused
//!   ([`SecurityError::Corrupted`]), never read as empty, and a change that would fail the
//!   validation is refused before anything is written.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tandem_engine::durable_file;
use tandem_engine::storage::StorageRef;

use super::users::SecurityError;

/// What identifies one version of a file on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

struct Loaded<T> {
    value: Arc<T>,
    stamp: Option<Stamp>,
}

/// One shared JSON security file (see the module documentation).
pub struct SharedFile<T> {
    dir: PathBuf,
    name: &'static str,
    storage: StorageRef,
    loaded: RwLock<Loaded<T>>,
    generation: AtomicU64,
    validate: fn(&T) -> Result<(), String>,
}

impl<T> SharedFile<T>
where
    T: Serialize + DeserializeOwned + Default + PartialEq,
{
    /// Opens `dir/name` (the default value when the file does not exist yet).
    pub fn open(
        storage: StorageRef,
        dir: PathBuf,
        name: &'static str,
        validate: fn(&T) -> Result<(), String>,
    ) -> Result<SharedFile<T>, SecurityError> {
        let file = SharedFile {
            dir,
            name,
            storage,
            loaded: RwLock::new(Loaded {
                value: Arc::new(T::default()),
                stamp: None,
            }),
            generation: AtomicU64::new(0),
            validate,
        };
        file.current()?;
        Ok(file)
    }

    fn path(&self) -> PathBuf {
        self.dir.join(self.name)
    }

    fn stamp(&self) -> Result<Option<Stamp>, SecurityError> {
        let path = self.path();
        match std::fs::metadata(&path) {
            Ok(metadata) => {
                use std::os::unix::fs::MetadataExt;
                Ok(Some(Stamp {
                    modified: metadata.modified().ok(),
                    len: metadata.len(),
                    inode: metadata.ino(),
                }))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SecurityError::Io { path, source }),
        }
    }

    fn read(&self) -> Result<T, SecurityError> {
        let path = self.path();
        let Some(bytes) = durable_file::read_if_exists(&*self.storage, &path)? else {
            return Ok(T::default());
        };
        let corrupted = |reason: String| SecurityError::Corrupted {
            path: path.clone(),
            reason,
        };
        let value: T =
            serde_json::from_slice(&bytes).map_err(|error| corrupted(error.to_string()))?;
        (self.validate)(&value).map_err(corrupted)?;
        Ok(value)
    }

    /// The value as of the file's last change, reloaded when the file changed on disk.
    pub fn current(&self) -> Result<Arc<T>, SecurityError> {
        let stamp = self.stamp()?;
        {
            let loaded = self.loaded.read();
            if loaded.stamp == stamp && stamp.is_some() {
                return Ok(loaded.value.clone());
            }
        }
        let value = self.read()?;
        let mut loaded = self.loaded.write();
        if *loaded.value != value {
            loaded.value = Arc::new(value);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        loaded.stamp = stamp;
        Ok(loaded.value.clone())
    }

    /// Bumped whenever the value changes, here or on disk.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Applies `change` under the lock to the value as it is on disk, and stores the result
    /// durably when `change` succeeds and the result is valid.
    pub fn update<R>(
        &self,
        change: impl FnOnce(&mut T) -> Result<R, SecurityError>,
    ) -> Result<R, SecurityError> {
        create_private_dir(&self.storage, &self.dir)?;
        let lock_path = self.dir.join(format!("{}.lock", self.name));
        let io = |source| SecurityError::Io {
            path: lock_path.clone(),
            source,
        };
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io)?;
        lock.lock().map_err(io)?;
        let mut value = self.read()?;
        let result = change(&mut value)?;
        (self.validate)(&value).map_err(SecurityError::Refused)?;
        let bytes = serde_json::to_vec_pretty(&value)
            .map_err(|error| SecurityError::Refused(format!("cannot encode: {error}")))?;
        durable_file::replace_atomically(&*self.storage, &self.path(), &bytes)?;
        {
            use std::os::unix::fs::PermissionsExt;
            let path = self.path();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|source| SecurityError::Io { path, source })?;
        }
        drop(lock);
        self.current()?;
        Ok(result)
    }
}

/// Creates `dir` (and its parents) with the directory itself readable by its owner only.
pub fn create_private_dir(storage: &StorageRef, dir: &Path) -> Result<(), SecurityError> {
    durable_file::create_dir_all(&**storage, dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|source| {
        SecurityError::Io {
            path: dir.to_path_buf(),
            source,
        }
    })
}
