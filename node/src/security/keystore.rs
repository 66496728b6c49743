//! The keystore: secure settings of the node (`<data>/security/keystore.json`, readable by its
//! owner only), managed with `tandem keystore add|list|remove` and read again by
//! `POST /_nodes/reload_secure_settings` without a restart.
//!
//! Tandem's secure settings are the credentials a follower presents to each remote cluster:
//! `cluster.remote.<alias>.credentials`, the `encoded` value of a cross-cluster API key the
//! leader cluster created (Elasticsearch 8's setting of the same name). Guarantees (with those
//! of [`SharedFile`]): only known setting names are stored; values are never logged or shown
//! (`list` shows names).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tandem_engine::storage::StorageRef;

use super::shared_file::SharedFile;
use super::users::{SecurityError, SECURITY_DIR};

/// The keystore file, in [`SECURITY_DIR`].
pub const KEYSTORE_FILE: &str = "keystore.json";
/// Longest value accepted.
pub const MAX_VALUE_BYTES: usize = 4096;
/// Most settings.
pub const MAX_SETTINGS: usize = 1000;

#[derive(Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct KeystoreFile {
    settings: BTreeMap<String, String>,
}

/// The alias of a `cluster.remote.<alias>.credentials` setting name.
pub fn credentials_alias(name: &str) -> Option<&str> {
    let alias = name
        .strip_prefix("cluster.remote.")?
        .strip_suffix(".credentials")?;
    let valid = !alias.is_empty()
        && alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    valid.then_some(alias)
}

fn validate(file: &KeystoreFile) -> Result<(), String> {
    if file.settings.len() > MAX_SETTINGS {
        return Err(format!("more than [{MAX_SETTINGS}] settings"));
    }
    for (name, value) in &file.settings {
        check(name, value)?;
    }
    Ok(())
}

fn check(name: &str, value: &str) -> Result<(), String> {
    if credentials_alias(name).is_none() {
        return Err(format!(
            "unknown secure setting [{name}]: the keystore holds cluster.remote.<alias>.credentials"
        ));
    }
    if value.is_empty() || value.len() > MAX_VALUE_BYTES || value.chars().any(char::is_whitespace) {
        return Err(format!(
            "the value of [{name}] must be one word of at most {MAX_VALUE_BYTES} bytes (a cross-cluster API key's encoded value)"
        ));
    }
    Ok(())
}

/// The keystore of one data directory.
pub struct Keystore {
    file: SharedFile<KeystoreFile>,
}

impl Keystore {
    /// Opens the keystore of `data` (empty when the file does not exist yet).
    pub fn open(storage: StorageRef, data: &Path) -> Result<Keystore, SecurityError> {
        Ok(Keystore {
            file: SharedFile::open(storage, data.join(SECURITY_DIR), KEYSTORE_FILE, validate)?,
        })
    }

    /// Sets `name` to `value`.
    pub fn add(&self, name: &str, value: &str) -> Result<(), SecurityError> {
        check(name, value).map_err(SecurityError::Refused)?;
        self.file.update(|file| {
            file.settings.insert(name.to_string(), value.to_string());
            Ok(())
        })
    }

    /// Removes `name`; returns whether it was there.
    pub fn remove(&self, name: &str) -> Result<bool, SecurityError> {
        self.file
            .update(|file| Ok(file.settings.remove(name).is_some()))
    }

    /// The setting names.
    pub fn names(&self) -> Result<Vec<String>, SecurityError> {
        Ok(self.file.current()?.settings.keys().cloned().collect())
    }

    /// The credentials of each remote cluster alias, as the file holds them now.
    pub fn remote_credentials(&self) -> Result<BTreeMap<String, String>, SecurityError> {
        Ok(self
            .file
            .current()?
            .settings
            .iter()
            .filter_map(|(name, value)| {
                credentials_alias(name).map(|alias| (alias.to_string(), value.clone()))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_remote_credentials_are_kept_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let keystore = Keystore::open(tandem_engine::storage::real(), dir.path()).unwrap();
        keystore
            .add("cluster.remote.leader.credentials", "aWQ6a2V5")
            .unwrap();
        assert!(keystore.add("xpack.security.foo", "x").is_err());
        assert!(keystore
            .add("cluster.remote.leader.credentials", "two words")
            .is_err());
        assert!(keystore.add("cluster.remote..credentials", "x").is_err());
        assert_eq!(
            keystore.remote_credentials().unwrap(),
            BTreeMap::from([("leader".to_string(), "aWQ6a2V5".to_string())])
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(SECURITY_DIR).join(KEYSTORE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(keystore
            .remove("cluster.remote.leader.credentials")
            .unwrap());
        assert!(keystore.remote_credentials().unwrap().is_empty());
    }
}
