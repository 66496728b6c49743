//! The follow state files (`ccr_followers.json`, `ccr_pending_follows.json`,
//! `ccr_auto_follow.json`): JSON documents in the state directory, replaced with
//! [`durable_file::replace_atomically`], so a crash leaves the old or the new state, never a
//! torn one.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tandem_engine::durable_file::{self, DurableFileError};

use crate::error::CcrError;

/// Reads `dir/name`; a missing file is the default (empty) state. A file that does not parse
/// is [`CcrError::Corrupted`], a failing read [`CcrError::Io`].
pub fn load<T: DeserializeOwned + Default>(dir: &Path, name: &str) -> Result<T, CcrError> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|source| CcrError::Corrupted { path, source })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(source) => Err(CcrError::Io { path, source }),
    }
}

/// Replaces `dir/name` with `state`, creating `dir` if needed.
pub fn store<T: Serialize + ?Sized>(dir: &Path, name: &str, state: &T) -> Result<(), CcrError> {
    let path = dir.join(name);
    let bytes = match serde_json::to_vec_pretty(state) {
        Ok(bytes) => bytes,
        Err(source) => return Err(CcrError::Encode { path, source }),
    };
    durable_file::create_dir_all(dir).map_err(io_error)?;
    durable_file::replace_atomically(&path, &bytes).map_err(io_error)?;
    Ok(())
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
        store(&state_dir, "state.json", &state).unwrap();
        assert_eq!(load::<State>(&state_dir, "state.json").unwrap(), state);
        assert_eq!(
            load::<State>(&state_dir, "absent.json").unwrap(),
            State::new()
        );
    }

    #[test]
    fn a_state_file_that_does_not_parse_is_corrupted_and_a_server_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"{\"follower\": ").unwrap();
        let error = load::<State>(dir.path(), "state.json").unwrap_err();
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
        let read = load::<State>(dir.path(), "state.json").unwrap_err();
        let written = store(dir.path(), "state.json", &State::new()).unwrap_err();
        for error in [read, written] {
            assert!(matches!(&error, CcrError::Io { .. }), "{error:?}");
            assert_eq!(error.status(), 500);
            assert_ne!(error.type_name(), "illegal_argument_exception");
            let source = std::error::Error::source(&error).expect("the I/O error is the source");
            assert!(source.downcast_ref::<std::io::Error>().is_some());
        }
    }
}
