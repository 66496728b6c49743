//! The native users of a node: `<data>/security/users.json`, shared by the running node (the
//! `/_security/user` API) and `tandem users` (the command line, node running or not).
//!
//! Guarantees:
//! - the file holds argon2id hashes ([`super::secrets`]), never a password;
//! - `<data>/security` is readable by the node's operating-system user only (mode 0700);
//! - every change is a read-modify-write under an exclusive lock (`users.lock`), replaced
//!   atomically and durably (`durable_file::replace_atomically`): a REST change and a
//!   `tandem users` change made at the same time both land;
//! - a change made by `tandem users` while the node runs is seen by the node's next lookup (the
//!   file's stamp, one `stat`, is compared on every lookup) and bumps [`UserStore::generation`],
//!   which drops every cached authentication;
//! - a file that does not parse, or holds something other than argon2 hashes, is refused
//!   (`SecurityError::Corrupted`), never read as "no users";
//! - at most [`MAX_USERS`] users.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tandem_engine::durable_file;
use tandem_engine::storage::StorageRef;

use super::secrets;

/// Directory of the security files, under the data directory.
pub const SECURITY_DIR: &str = "security";
/// The users file, in [`SECURITY_DIR`].
pub const USERS_FILE: &str = "users.json";
const LOCK_FILE: &str = "users.lock";
/// Most users a node holds.
pub const MAX_USERS: usize = 10_000;
/// Longest user name (Elasticsearch's limit).
pub const MAX_USERNAME_CHARS: usize = 507;
/// The superuser the first start with security on creates.
pub const ELASTIC: &str = "elastic";

/// Why a security file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    /// A file cannot be read or written.
    #[error("I/O error on [{path}]: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file does not hold what the node writes.
    #[error("corrupted [{path}]: {reason}")]
    Corrupted {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The change asked for is not allowed (the reason says why, in Elasticsearch's words
    /// where it has them).
    #[error("{0}")]
    Refused(String),
}

/// One user as stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct User {
    /// argon2id PHC string.
    pub password_hash: String,
    /// Role names.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Display name.
    #[serde(default)]
    pub full_name: Option<String>,
    /// E-mail address.
    #[serde(default)]
    pub email: Option<String>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// A disabled user cannot authenticate.
    #[serde(default = "enabled")]
    pub enabled: bool,
}

impl From<durable_file::DurableFileError> for SecurityError {
    fn from(error: durable_file::DurableFileError) -> Self {
        SecurityError::Io {
            path: error.path,
            source: error.source,
        }
    }
}

fn enabled() -> bool {
    true
}

impl User {
    /// The user as the `/_security/user` and `_authenticate` APIs show it (no hash).
    pub fn to_json(&self, username: &str) -> Value {
        serde_json::json!({
            "username": username,
            "roles": self.roles,
            "full_name": self.full_name,
            "email": self.email,
            "metadata": self.metadata,
            "enabled": self.enabled,
        })
    }
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    users: BTreeMap<String, User>,
}

/// What identifies one version of the file on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

struct Loaded {
    users: Arc<BTreeMap<String, User>>,
    stamp: Option<Stamp>,
}

/// The users of one data directory (see the module documentation).
pub struct UserStore {
    dir: PathBuf,
    storage: StorageRef,
    loaded: RwLock<Loaded>,
    generation: AtomicU64,
}

/// Checks a user name against Elasticsearch's rules (and Basic authentication's: no `:`).
pub fn check_username(name: &str) -> Result<(), SecurityError> {
    let count = name.chars().count();
    let valid = (1..=MAX_USERNAME_CHARS).contains(&count)
        && name.chars().all(|c| (' '..='~').contains(&c) && c != ':')
        && name.trim() == name;
    if valid {
        Ok(())
    } else {
        Err(SecurityError::Refused(format!(
            "Validation Failed: 1: Invalid username [{name}]... Usernames must be at least 1 and no more than {MAX_USERNAME_CHARS} characters. They can contain printable ASCII characters except ':', and cannot begin or end with whitespace.;"
        )))
    }
}

impl UserStore {
    /// Opens the users of `data` (none when the file does not exist yet).
    pub fn open(storage: StorageRef, data: &Path) -> Result<UserStore, SecurityError> {
        let store = UserStore {
            dir: data.join(SECURITY_DIR),
            storage,
            loaded: RwLock::new(Loaded {
                users: Arc::new(BTreeMap::new()),
                stamp: None,
            }),
            generation: AtomicU64::new(0),
        };
        store.refresh()?;
        Ok(store)
    }

    fn path(&self) -> PathBuf {
        self.dir.join(USERS_FILE)
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

    fn read_file(&self) -> Result<BTreeMap<String, User>, SecurityError> {
        let path = self.path();
        let Some(bytes) =
            durable_file::read_if_exists(&*self.storage, &path).map_err(SecurityError::from)?
        else {
            return Ok(BTreeMap::new());
        };
        let corrupted = |reason: String| SecurityError::Corrupted {
            path: path.clone(),
            reason,
        };
        let file: UsersFile =
            serde_json::from_slice(&bytes).map_err(|error| corrupted(error.to_string()))?;
        for (name, user) in &file.users {
            check_username(name).map_err(|_| corrupted(format!("invalid user name [{name}]")))?;
            if !secrets::is_password_hash(&user.password_hash) {
                return Err(corrupted(format!(
                    "user [{name}] has no argon2 password hash"
                )));
            }
        }
        Ok(file.users)
    }

    /// Reloads the file when it changed on disk since it was last read.
    pub fn refresh(&self) -> Result<(), SecurityError> {
        let stamp = self.stamp()?;
        if self.loaded.read().stamp == stamp && stamp.is_some() {
            return Ok(());
        }
        let users = self.read_file()?;
        let mut loaded = self.loaded.write();
        let changed = *loaded.users != users;
        loaded.users = Arc::new(users);
        loaded.stamp = stamp;
        if changed {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Bumped whenever the users change (here or on disk): cached authentications of an
    /// older generation are stale.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Every user, as of the file's last change.
    pub fn all(&self) -> Result<Arc<BTreeMap<String, User>>, SecurityError> {
        self.refresh()?;
        Ok(self.loaded.read().users.clone())
    }

    /// One user.
    pub fn get(&self, name: &str) -> Result<Option<User>, SecurityError> {
        Ok(self.all()?.get(name).cloned())
    }

    /// Applies `change` to the users under the lock, from the file as it is on disk, and
    /// stores the result durably when `change` succeeds.
    pub fn update<R>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, User>) -> Result<R, SecurityError>,
    ) -> Result<R, SecurityError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SecurityError::Io { path, source }
        };
        create_private_dir(&self.storage, &self.dir)?;
        let lock_path = self.dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        let mut users = self.read_file()?;
        let result = change(&mut users)?;
        if users.len() > MAX_USERS {
            return Err(SecurityError::Refused(format!(
                "a node holds at most [{MAX_USERS}] users"
            )));
        }
        let bytes = serde_json::to_vec_pretty(&UsersFile { users })
            .map_err(|error| SecurityError::Refused(format!("cannot encode users: {error}")))?;
        let path = self.path();
        durable_file::replace_atomically(&*self.storage, &path, &bytes)?;
        drop(lock);
        self.refresh()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn user(password: &str, roles: &[&str]) -> User {
        User {
            password_hash: secrets::hash_password(password),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            full_name: None,
            email: None,
            metadata: Map::new(),
            enabled: true,
        }
    }

    #[test]
    fn changes_from_another_process_are_seen_and_bump_the_generation() {
        let dir = tempfile::tempdir().unwrap();
        let storage = tandem_engine::storage::real();
        let node = UserStore::open(storage.clone(), dir.path()).unwrap();
        assert!(node.all().unwrap().is_empty());
        // `tandem users add` opens its own store on the same directory.
        let cli = UserStore::open(storage.clone(), dir.path()).unwrap();
        cli.update(|users| {
            users.insert("ops".into(), user("password-1", &["superuser"]));
            Ok(())
        })
        .unwrap();
        let before = node.generation();
        let seen = node
            .get("ops")
            .unwrap()
            .expect("the node sees the new user");
        assert!(secrets::verify_password("password-1", &seen.password_hash));
        assert!(node.generation() > before);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(SECURITY_DIR))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        // A change through the node keeps the CLI's.
        node.update(|users| {
            users.insert("reader".into(), user("password-2", &["viewer"]));
            Ok(())
        })
        .unwrap();
        let all = cli.all().unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["ops", "reader"]);
    }

    #[test]
    fn a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let storage = tandem_engine::storage::real();
        std::fs::create_dir_all(dir.path().join(SECURITY_DIR)).unwrap();
        let path = dir.path().join(SECURITY_DIR).join(USERS_FILE);
        for bad in [
            "{",
            r#"{"users":{"a":{"password_hash":"plain-text"}}}"#,
            r#"{"users":{"a:b":{"password_hash":"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"}}}"#,
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(
                matches!(
                    UserStore::open(storage.clone(), dir.path()),
                    Err(SecurityError::Corrupted { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn user_names_follow_elasticsearch_rules() {
        for good in ["elastic", "a", "john.doe@example.com", "with space"] {
            check_username(good).unwrap();
        }
        for bad in ["", " lead", "trail ", "a:b", "tab\t", "é", &"x".repeat(508)] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
    }
}
