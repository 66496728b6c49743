//! The native users of a node: `<data>/security/users.json`, shared by the running node (the
//! `/_security/user` API) and `tandem users` (the command line, node running or not).
//!
//! Guarantees (with those of [`SharedFile`]: locked read-modify-write, atomic durable
//! replacement, changes of another process seen at the next lookup):
//! - the file holds argon2id hashes ([`super::secrets`]), never a password;
//! - a change made by `tandem users` while the node runs bumps [`UserStore::generation`],
//!   which drops every cached authentication;
//! - a file that does not parse, or holds something other than argon2 hashes, is refused
//!   (`SecurityError::Corrupted`), never read as "no users";
//! - at most [`MAX_USERS`] users.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tandem_engine::durable_file;
use tandem_engine::storage::StorageRef;

use super::secrets;
use super::shared_file::SharedFile;

/// Directory of the security files, under the data directory.
pub const SECURITY_DIR: &str = "security";
/// The users file, in [`SECURITY_DIR`].
pub const USERS_FILE: &str = "users.json";
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

#[derive(Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    users: BTreeMap<String, User>,
}

/// The users of one data directory (see the module documentation).
pub struct UserStore {
    file: SharedFile<UsersFile>,
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

fn validate(file: &UsersFile) -> Result<(), String> {
    for (name, user) in &file.users {
        check_username(name).map_err(|_| format!("invalid user name [{name}]"))?;
        if !secrets::is_password_hash(&user.password_hash) {
            return Err(format!("user [{name}] has no argon2 password hash"));
        }
    }
    if file.users.len() > MAX_USERS {
        return Err(format!("more than [{MAX_USERS}] users"));
    }
    Ok(())
}

impl UserStore {
    /// Opens the users of `data` (none when the file does not exist yet).
    pub fn open(storage: StorageRef, data: &Path) -> Result<UserStore, SecurityError> {
        Ok(UserStore {
            file: SharedFile::open(storage, data.join(SECURITY_DIR), USERS_FILE, validate)?,
        })
    }

    /// Bumped whenever the users change (here or on disk): cached authentications of an
    /// older generation are stale.
    pub fn generation(&self) -> u64 {
        self.file.generation()
    }

    /// Every user, as of the file's last change.
    pub fn all(&self) -> Result<BTreeMap<String, User>, SecurityError> {
        Ok(self.file.current()?.users.clone())
    }

    /// One user.
    pub fn get(&self, name: &str) -> Result<Option<User>, SecurityError> {
        Ok(self.file.current()?.users.get(name).cloned())
    }

    /// Applies `change` to the users under the lock, from the file as it is on disk, and
    /// stores the result durably when `change` succeeds.
    pub fn update<R>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, User>) -> Result<R, SecurityError>,
    ) -> Result<R, SecurityError> {
        self.file.update(|file| change(&mut file.users))
    }
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
