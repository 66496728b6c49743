//! `Indices`: the indexes of one data directory, by name.
//!
//! Each index lives in `<data_dir>/indices/<uuid>/`; the name is in the index's own metadata,
//! so a rename-free layout survives crashes at any point: an index directory without a
//! metadata file is an interrupted creation and is removed on open.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::index::{Index, IndexSettings, INDEX_METADATA_FILE};
use crate::mapping::Mappings;

/// The indexes of a data directory.
pub struct Indices {
    dir: PathBuf,
    indices: RwLock<BTreeMap<String, Arc<Index>>>,
}

impl Indices {
    /// Opens (creating it if needed) the data directory and every index in it.
    pub fn open(data_dir: &Path) -> Result<Indices> {
        let dir = data_dir.join("indices");
        std::fs::create_dir_all(&dir).map_err(|e| EngineError::io(&dir, e))?;
        let mut indices = BTreeMap::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| EngineError::io(&dir, e))?;
        for entry in entries {
            let path = entry.map_err(|e| EngineError::io(&dir, e))?.path();
            if !path.is_dir() {
                continue;
            }
            if !path.join(INDEX_METADATA_FILE).exists() {
                tracing::warn!(path = %path.display(), "removing an index whose creation was interrupted");
                std::fs::remove_dir_all(&path).map_err(|e| EngineError::io(&path, e))?;
                continue;
            }
            let index = Index::open(&path)?;
            indices.insert(index.name(), Arc::new(index));
        }
        Ok(Indices {
            dir,
            indices: RwLock::new(indices),
        })
    }

    /// The index called `name`.
    pub fn get(&self, name: &str) -> Result<Arc<Index>> {
        self.indices
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::IndexNotFound {
                name: name.to_string(),
            })
    }

    /// Names of every index.
    pub fn names(&self) -> Vec<String> {
        self.indices.read().keys().cloned().collect()
    }

    /// Creates an index from Elasticsearch settings and mappings bodies.
    pub fn create(&self, name: &str, settings: &Value, mappings: &Value) -> Result<Arc<Index>> {
        self.insert_new(name, |path| Index::create(path, name, settings, mappings))
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
        self.insert_new(name, |path| {
            Index::create_with(path, name, uuid, settings, mappings, follower)
        })
    }

    /// Builds a new index with `build` in a fresh directory and registers it under `name`.
    fn insert_new(
        &self,
        name: &str,
        build: impl FnOnce(&Path) -> Result<Index>,
    ) -> Result<Arc<Index>> {
        let mut indices = self.indices.write();
        if indices.contains_key(name) {
            return Err(EngineError::IndexAlreadyExists {
                name: name.to_string(),
            });
        }
        let path = self.dir.join(uuid::Uuid::new_v4().simple().to_string());
        let index = Arc::new(build(&path)?);
        indices.insert(name.to_string(), index.clone());
        Ok(index)
    }

    /// Deletes an index and its files.
    pub fn delete(&self, name: &str) -> Result<()> {
        let index =
            self.indices
                .write()
                .remove(name)
                .ok_or_else(|| EngineError::IndexNotFound {
                    name: name.to_string(),
                })?;
        let path = index.dir().to_path_buf();
        drop(index);
        // The metadata file goes first: from then on the directory is an interrupted creation
        // that a restart removes, whatever happens below.
        let metadata = path.join(INDEX_METADATA_FILE);
        std::fs::remove_file(&metadata).map_err(|e| EngineError::io(&metadata, e))?;
        std::fs::remove_dir_all(&path).map_err(|e| EngineError::io(&path, e))
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
}
