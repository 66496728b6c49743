//! The follow state files (`ccr_followers.json`, `ccr_pending_follows.json`,
//! `ccr_auto_follow.json`): JSON documents in the state directory, replaced with
//! [`durable_file::replace_atomically`], so a crash leaves the old or the new state, never a
//! torn one.
//!
//! An async caller stores with [`store_off_thread`]: the write and its fsyncs run on the
//! blocking pool, so they never stall a runtime worker (and every task queued on it).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tandem_engine::durable_file::{self, DurableFileError};
use tandem_engine::storage::{Storage, StorageRef};

use crate::error::CcrError;

/// Reads `dir/name`; a missing file is the default (empty) state. A file that does not parse
/// is [`CcrError::Corrupted`], a failing read [`CcrError::Io`].
pub fn load<T: DeserializeOwned + Default>(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
) -> Result<T, CcrError> {
    let path = dir.join(name);
    match storage.read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|source| CcrError::Corrupted { path, source })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(source) => Err(CcrError::Io { path, source }),
    }
}

/// Replaces `dir/name` with `state`, creating `dir` if needed. Blocks on fsync: an async
/// caller uses [`store_off_thread`].
pub fn store<T: Serialize + ?Sized>(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    state: &T,
) -> Result<(), CcrError> {
    let path = dir.join(name);
    let bytes = encode(&path, state)?;
    write(storage, dir, &path, &bytes)
}

/// The write of a state file by [`store_off_thread`]: owns everything it needs (no borrow of
/// the state it was encoded from).
pub type StoreOffThread = Pin<Box<dyn Future<Output = Result<(), CcrError>> + Send + 'static>>;

/// [`store`] for an async caller: `state` is encoded now (a small JSON document, so the borrow
/// ends before the returned future first waits), then the write and its fsyncs run on the
/// blocking pool while the future waits for them.
///
/// A caller may hold an async lock across the returned future to keep its writes in the
/// order of its changes: this cannot deadlock, because the blocking write takes no lock, and
/// it stalls only the tasks waiting for that lock, for one fsynced write of a small file.
pub fn store_off_thread<T: Serialize + ?Sized>(
    storage: StorageRef,
    dir: &Path,
    name: &str,
    state: &T,
) -> StoreOffThread {
    let path = dir.join(name);
    let encoded = encode(&path, state);
    let dir = dir.to_path_buf();
    Box::pin(async move {
        let bytes = encoded?;
        let written_path = path.clone();
        tokio::task::spawn_blocking(move || write(&*storage, &dir, &written_path, &bytes))
            .await
            .map_err(|error| CcrError::Io {
                path,
                source: std::io::Error::other(format!("the state file write failed: {error}")),
            })?
    })
}

fn encode<T: Serialize + ?Sized>(path: &Path, state: &T) -> Result<Vec<u8>, CcrError> {
    serde_json::to_vec_pretty(state).map_err(|source| CcrError::Encode {
        path: PathBuf::from(path),
        source,
    })
}

fn write(storage: &dyn Storage, dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), CcrError> {
    durable_file::create_dir_all(storage, dir).map_err(io_error)?;
    durable_file::replace_atomically(storage, path, bytes).map_err(io_error)
}

fn io_error(error: DurableFileError) -> CcrError {
    CcrError::Io {
        path: error.path,
        source: error.source,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    type State = BTreeMap<String, u64>;

    #[test]
    fn a_state_survives_a_store_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let state = State::from([("follower".to_string(), 7)]);
        store(
            &tandem_engine::storage::RealStorage,
            &state_dir,
            "state.json",
            &state,
        )
        .unwrap();
        assert_eq!(
            load::<State>(
                &tandem_engine::storage::RealStorage,
                &state_dir,
                "state.json"
            )
            .unwrap(),
            state
        );
        assert_eq!(
            load::<State>(
                &tandem_engine::storage::RealStorage,
                &state_dir,
                "absent.json"
            )
            .unwrap(),
            State::new()
        );
    }

    #[test]
    fn a_state_file_that_does_not_parse_is_corrupted_and_a_server_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"{\"follower\": ").unwrap();
        let error = load::<State>(
            &tandem_engine::storage::RealStorage,
            dir.path(),
            "state.json",
        )
        .unwrap_err();
        assert!(
            matches!(&error, CcrError::Corrupted { path: reported, .. } if *reported == path),
            "{error:?}"
        );
        assert_eq!(error.status(), 500);
    }

    #[test]
    fn a_state_file_that_cannot_be_read_or_written_is_an_io_error_and_a_server_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file belongs: reading and replacing it both fail.
        std::fs::create_dir(dir.path().join("state.json")).unwrap();
        let read = load::<State>(
            &tandem_engine::storage::RealStorage,
            dir.path(),
            "state.json",
        )
        .unwrap_err();
        let written = store(
            &tandem_engine::storage::RealStorage,
            dir.path(),
            "state.json",
            &State::new(),
        )
        .unwrap_err();
        for error in [read, written] {
            assert!(matches!(&error, CcrError::Io { .. }), "{error:?}");
            assert_eq!(error.status(), 500);
            assert_ne!(error.type_name(), "illegal_argument_exception");
            let source = std::error::Error::source(&error).expect("the I/O error is the source");
            assert!(source.downcast_ref::<std::io::Error>().is_some());
        }
    }
}
