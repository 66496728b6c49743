//! API keys (`<data>/security/api_keys.json`): created by a user for itself, presented as
//! `Authorization: ApiKey base64(id:key)`, expiring or invalidated.
//!
//! Guarantees (with those of [`SharedFile`]):
//! - a key's secret is 16 random bytes, shown once in the creation answer and stored only as
//!   its SHA-256 (a high-entropy secret needs no slow hash); a presented key is compared in
//!   constant time;
//! - an expired or invalidated key authenticates nothing from the next request on;
//! - a key holds its owner's roles as they were when it was created (`limited_by`), and the
//!   role descriptors it was created with;
//! - invalidated and expired keys stay visible for [`RETENTION_AFTER_END_MS`], then go at the
//!   next change; at most [`MAX_API_KEYS`] keys are kept.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tandem_engine::storage::StorageRef;

use super::secrets;
use super::shared_file::SharedFile;
use super::users::{SecurityError, SECURITY_DIR};

/// The API keys file, in [`SECURITY_DIR`].
pub const API_KEYS_FILE: &str = "api_keys.json";
/// Most API keys a node keeps, invalidated ones included until they are removed.
pub const MAX_API_KEYS: usize = 10_000;
/// How long an invalidated or expired key stays listed (Elasticsearch's
/// `xpack.security.authc.api_key.delete.retention_period`, 7 days).
pub const RETENTION_AFTER_END_MS: u64 = 7 * 24 * 3600 * 1000;
/// Longest API key name (Elasticsearch's limit).
pub const MAX_NAME_CHARS: usize = 1024;

/// What kind of key.
pub const REST_KEY: &str = "rest";
/// A key for a remote cluster's follower (`POST /_security/cross_cluster/api_key`).
pub const CROSS_CLUSTER_KEY: &str = "cross_cluster";

/// One API key as stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ApiKey {
    /// Its name.
    pub name: String,
    /// SHA-256 of the secret, hex.
    pub key_hash: String,
    /// Creation time, epoch milliseconds.
    pub creation: u64,
    /// Expiration time, epoch milliseconds.
    pub expiration: Option<u64>,
    /// Whether it was invalidated.
    pub invalidated: bool,
    /// When it was invalidated, epoch milliseconds.
    #[serde(default)]
    pub invalidation: Option<u64>,
    /// Its owner.
    pub username: String,
    /// `rest` or `cross_cluster`.
    #[serde(rename = "type")]
    pub key_type: String,
    /// The role descriptors it was created with (they limit what it may do).
    #[serde(default)]
    pub role_descriptors: Map<String, Value>,
    /// Its owner's roles when it was created.
    #[serde(default)]
    pub limited_by: Vec<String>,
    /// A cross-cluster key's `access` (`search` and `replication` index patterns).
    #[serde(default)]
    pub access: Option<Value>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

impl ApiKey {
    /// Whether it authenticates at `now`.
    pub fn is_active(&self, now: u64) -> bool {
        !self.invalidated && self.expiration.is_none_or(|expiration| now < expiration)
    }

    /// The key as `GET /_security/api_key` shows it.
    pub fn to_json(&self, id: &str) -> Value {
        let mut shown = json!({
            "id": id,
            "name": self.name,
            "type": self.key_type,
            "creation": self.creation,
            "invalidated": self.invalidated,
            "username": self.username,
            "realm": "native",
            "realm_type": "native",
            "metadata": self.metadata,
        });
        if let Some(expiration) = self.expiration {
            shown["expiration"] = json!(expiration);
        }
        if let Some(invalidation) = self.invalidation {
            shown["invalidation"] = json!(invalidation);
        }
        if self.key_type == CROSS_CLUSTER_KEY {
            shown["access"] = self.access.clone().unwrap_or(Value::Null);
        } else {
            shown["role_descriptors"] = Value::Object(self.role_descriptors.clone());
            shown["limited_by"] = json!([{"roles": self.limited_by}]);
        }
        shown
    }

    /// When it stopped authenticating, if it did.
    fn ended_at(&self) -> Option<u64> {
        match (self.invalidation, self.expiration) {
            (Some(invalidated), _) => Some(invalidated),
            (None, expiration) => expiration,
        }
    }
}

#[derive(Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct ApiKeysFile {
    api_keys: BTreeMap<String, ApiKey>,
}

fn validate(file: &ApiKeysFile) -> Result<(), String> {
    if file.api_keys.len() > MAX_API_KEYS {
        return Err(format!(
            "more than [{MAX_API_KEYS}] API keys; invalidate unused ones"
        ));
    }
    for (id, key) in &file.api_keys {
        if key.key_hash.len() != 64 || !key.key_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("API key [{id}] has no SHA-256 hash"));
        }
    }
    Ok(())
}

/// The index name patterns of a cross-cluster key's `access.replication` entries.
pub fn replication_names(access: Option<&Value>) -> Vec<String> {
    access
        .and_then(|access| access["replication"].as_array())
        .map(|entries| {
            entries
                .iter()
                .filter_map(|entry| entry["names"].as_array())
                .flatten()
                .filter_map(|name| name.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Milliseconds since the epoch.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A key just created: what the creation answer shows, once.
pub struct CreatedKey {
    /// Its id.
    pub id: String,
    /// The secret.
    pub key: String,
}

impl CreatedKey {
    /// `base64(id:key)`, what `Authorization: ApiKey` carries.
    pub fn encoded(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.id, self.key))
    }
}

/// The API keys of one data directory.
pub struct ApiKeyStore {
    file: SharedFile<ApiKeysFile>,
}

impl ApiKeyStore {
    /// Opens the API keys of `data`.
    pub fn open(storage: StorageRef, data: &Path) -> Result<ApiKeyStore, SecurityError> {
        Ok(ApiKeyStore {
            file: SharedFile::open(storage, data.join(SECURITY_DIR), API_KEYS_FILE, validate)?,
        })
    }

    /// Stores `key` (its `key_hash` is set here) under a new id; returns the id and secret.
    pub fn create(&self, mut key: ApiKey) -> Result<CreatedKey, SecurityError> {
        if key.name.is_empty() || key.name.chars().count() > MAX_NAME_CHARS {
            return Err(SecurityError::Refused(format!(
                "Validation Failed: 1: api key name is required and must be at most {MAX_NAME_CHARS} characters;"
            )));
        }
        let created = CreatedKey {
            id: secrets::random_token::<15>(),
            key: secrets::random_token::<16>(),
        };
        key.key_hash = hex(&secrets::sha256(created.key.as_bytes()));
        let id = created.id.clone();
        let now = now_millis();
        self.file.update(move |file| {
            // Keys that ended long ago make room.
            file.api_keys.retain(|_, key| {
                key.ended_at()
                    .is_none_or(|ended| now.saturating_sub(ended) < RETENTION_AFTER_END_MS)
            });
            file.api_keys.insert(id, key);
            Ok(())
        })?;
        Ok(created)
    }

    /// The active key `id` whose secret is `secret`.
    pub fn authenticate(&self, id: &str, secret: &str) -> Result<Option<ApiKey>, SecurityError> {
        let file = self.file.current()?;
        let Some(key) = file.api_keys.get(id) else {
            return Ok(None);
        };
        let presented = hex(&secrets::sha256(secret.as_bytes()));
        let matches = secrets::constant_time_eq(presented.as_bytes(), key.key_hash.as_bytes());
        Ok((matches && key.is_active(now_millis())).then(|| key.clone()))
    }

    /// Every key, by id.
    pub fn all(&self) -> Result<BTreeMap<String, ApiKey>, SecurityError> {
        Ok(self.file.current()?.api_keys.clone())
    }

    /// Invalidates the keys `select` picks; returns the ids invalidated now and those
    /// invalidated before.
    pub fn invalidate(
        &self,
        select: impl Fn(&str, &ApiKey) -> bool,
    ) -> Result<(Vec<String>, Vec<String>), SecurityError> {
        let now = now_millis();
        self.file.update(|file| {
            let (mut now_invalidated, mut before) = (Vec::new(), Vec::new());
            for (id, key) in file.api_keys.iter_mut() {
                if !select(id, key) {
                    continue;
                }
                if key.invalidated {
                    before.push(id.clone());
                } else {
                    key.invalidated = true;
                    key.invalidation = Some(now);
                    now_invalidated.push(id.clone());
                }
            }
            Ok((now_invalidated, before))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, expiration: Option<u64>) -> ApiKey {
        ApiKey {
            name: name.to_string(),
            key_hash: String::new(),
            creation: now_millis(),
            expiration,
            invalidated: false,
            invalidation: None,
            username: "ops".to_string(),
            key_type: REST_KEY.to_string(),
            role_descriptors: Map::new(),
            limited_by: vec!["viewer".to_string()],
            access: None,
            metadata: Map::new(),
        }
    }

    #[test]
    fn keys_authenticate_until_they_expire_or_are_invalidated() {
        let dir = tempfile::tempdir().unwrap();
        let store = ApiKeyStore::open(tandem_engine::storage::real(), dir.path()).unwrap();
        let live = store.create(key("live", None)).unwrap();
        let expired = store
            .create(key("expired", Some(now_millis() - 1)))
            .unwrap();
        assert!(store.authenticate(&live.id, &live.key).unwrap().is_some());
        assert!(store.authenticate(&live.id, "wrong").unwrap().is_none());
        assert!(store.authenticate("nope", &live.key).unwrap().is_none());
        assert!(store
            .authenticate(&expired.id, &expired.key)
            .unwrap()
            .is_none());
        let (now, before) = store.invalidate(|_, key| key.name == "live").unwrap();
        assert_eq!(now, std::slice::from_ref(&live.id));
        assert!(before.is_empty());
        assert!(store.authenticate(&live.id, &live.key).unwrap().is_none());
        let (now, before) = store.invalidate(|_, key| key.name == "live").unwrap();
        assert!(now.is_empty());
        assert_eq!(before, std::slice::from_ref(&live.id));
        // The secret is not on disk.
        let stored =
            std::fs::read_to_string(dir.path().join(SECURITY_DIR).join(API_KEYS_FILE)).unwrap();
        assert!(!stored.contains(&live.key));
        assert!(store.create(key("", None)).is_err());
    }
}
