//! The follow state files (`ccr_followers.json`, `ccr_pending_follows.json`,
//! `ccr_auto_follow.json`): JSON documents in the state directory, replaced with
//! [`durable_file::replace_atomically`], so a crash leaves the old or the new state, never a
//! torn one.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tandem_engine::durable_file;
use tandem_engine::EngineError;

use crate::error::CcrError;

/// Reads `dir/name`; a missing file is the default (empty) state.
pub fn load<T: DeserializeOwned + Default>(dir: &Path, name: &str) -> Result<T, CcrError> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|error| CcrError::State(format!("{}: {error}", path.display()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(error) => Err(CcrError::State(format!("{}: {error}", path.display()))),
    }
}

/// Replaces `dir/name` with `state`, creating `dir` if needed.
pub fn store<T: Serialize + ?Sized>(dir: &Path, name: &str, state: &T) -> Result<(), CcrError> {
    let bytes =
        serde_json::to_vec_pretty(state).map_err(|error| CcrError::State(error.to_string()))?;
    durable_file::create_dir_all(dir)
        .map_err(|error| CcrError::State(format!("{}: {}", error.path.display(), error.source)))?;
    durable_file::replace_atomically(&dir.join(name), &bytes).map_err(EngineError::from)?;
    Ok(())
}
