//! Roles: the built-in ones (`superuser`, `viewer`, `editor`) and custom roles
//! (`<data>/security/roles.json`, managed by `PUT|GET|DELETE /_security/role/{name}`), each a
//! set of cluster privileges and of index privileges over index name patterns.
//!
//! Guarantees: a role names only privileges [`super::privileges`] knows (an unknown one is
//! refused when the role is stored, as Elasticsearch refuses it); built-in roles cannot be
//! changed or deleted; a role that does not exist grants nothing.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tandem_engine::storage::StorageRef;

use super::privileges::{cluster_grants, index_grants, is_cluster_privilege, is_index_privilege};
use super::shared_file::SharedFile;
use super::users::{SecurityError, SECURITY_DIR};
use super::SUPERUSER_ROLE;

/// The roles file, in [`SECURITY_DIR`].
pub const ROLES_FILE: &str = "roles.json";
/// Most custom roles.
pub const MAX_ROLES: usize = 10_000;

/// Index privileges over index name patterns.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IndexPrivileges {
    /// Index names or patterns (`logs-*`).
    pub names: Vec<String>,
    /// Index privilege names.
    pub privileges: Vec<String>,
    /// Accepted for compatibility; Tandem has no restricted indices.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_restricted_indices: bool,
}

/// One role.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RoleDescriptor {
    /// Cluster privilege names.
    #[serde(default)]
    pub cluster: Vec<String>,
    /// Index privileges.
    #[serde(default)]
    pub indices: Vec<IndexPrivileges>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Free-form description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl RoleDescriptor {
    /// Checks every privilege name.
    pub fn validate(&self) -> Result<(), String> {
        for privilege in &self.cluster {
            if !is_cluster_privilege(privilege) {
                return Err(format!("unknown cluster privilege [{privilege}]"));
            }
        }
        for entry in &self.indices {
            if entry.names.is_empty() {
                return Err("[indices.names] must not be empty".to_string());
            }
            for privilege in &entry.privileges {
                if !is_index_privilege(privilege) {
                    return Err(format!("unknown index privilege [{privilege}]"));
                }
            }
        }
        Ok(())
    }

    /// The role as the role API shows it.
    pub fn to_json(&self, reserved: bool) -> Value {
        let mut metadata = self.metadata.clone();
        if reserved {
            metadata.insert("_reserved".into(), Value::Bool(true));
        }
        json!({
            "cluster": self.cluster,
            "indices": self.indices,
            "applications": [],
            "run_as": [],
            "metadata": metadata,
            "transient_metadata": {"enabled": true},
        })
    }

    /// Whether it grants the cluster action `action`.
    pub fn grants_cluster(&self, action: &str) -> bool {
        self.cluster.iter().any(|p| cluster_grants(p, action))
    }

    /// Whether it grants the index action `action` on `index`.
    pub fn grants_index(&self, action: &str, index: &str) -> bool {
        self.indices.iter().any(|entry| {
            entry
                .names
                .iter()
                .any(|pattern| crate::rest::index_expression::wildcard_matches(pattern, index))
                && entry.privileges.iter().any(|p| index_grants(p, action))
        })
    }
}

/// The built-in roles.
pub fn builtin(name: &str) -> Option<RoleDescriptor> {
    let all_indices = |privileges: &[&str]| IndexPrivileges {
        names: vec!["*".to_string()],
        privileges: privileges.iter().map(|p| p.to_string()).collect(),
        allow_restricted_indices: false,
    };
    match name {
        SUPERUSER_ROLE => Some(RoleDescriptor {
            cluster: vec!["all".to_string()],
            indices: vec![all_indices(&["all"])],
            ..RoleDescriptor::default()
        }),
        "viewer" => Some(RoleDescriptor {
            cluster: vec!["monitor".to_string()],
            indices: vec![all_indices(&["read", "view_index_metadata", "monitor"])],
            ..RoleDescriptor::default()
        }),
        "editor" => Some(RoleDescriptor {
            cluster: vec!["monitor".to_string()],
            indices: vec![all_indices(&[
                "read",
                "write",
                "create_index",
                "view_index_metadata",
                "monitor",
            ])],
            ..RoleDescriptor::default()
        }),
        _ => None,
    }
}

/// The names of the built-in roles.
pub const BUILTIN_ROLES: [&str; 3] = [SUPERUSER_ROLE, "viewer", "editor"];

#[derive(Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct RolesFile {
    roles: BTreeMap<String, RoleDescriptor>,
}

fn validate(file: &RolesFile) -> Result<(), String> {
    if file.roles.len() > MAX_ROLES {
        return Err(format!("more than [{MAX_ROLES}] roles"));
    }
    for (name, role) in &file.roles {
        role.validate()
            .map_err(|reason| format!("role [{name}]: {reason}"))?;
    }
    Ok(())
}

/// The custom roles of one data directory, and the built-in ones.
pub struct RoleStore {
    file: SharedFile<RolesFile>,
}

impl RoleStore {
    /// Opens the roles of `data`.
    pub fn open(storage: StorageRef, data: &Path) -> Result<RoleStore, SecurityError> {
        Ok(RoleStore {
            file: SharedFile::open(storage, data.join(SECURITY_DIR), ROLES_FILE, validate)?,
        })
    }

    /// The role `name` (built-in or custom), if it exists.
    pub fn get(&self, name: &str) -> Result<Option<RoleDescriptor>, SecurityError> {
        if let Some(role) = builtin(name) {
            return Ok(Some(role));
        }
        Ok(self.file.current()?.roles.get(name).cloned())
    }

    /// Every custom role.
    pub fn custom(&self) -> Result<BTreeMap<String, RoleDescriptor>, SecurityError> {
        Ok(self.file.current()?.roles.clone())
    }

    /// Stores `role` as `name`; returns whether it was created (not updated).
    pub fn put(&self, name: &str, role: RoleDescriptor) -> Result<bool, SecurityError> {
        if builtin(name).is_some() {
            return Err(SecurityError::Refused(format!(
                "Role [{name}] is reserved and may not be used."
            )));
        }
        role.validate().map_err(SecurityError::Refused)?;
        self.file
            .update(|file| Ok(file.roles.insert(name.to_string(), role).is_none()))
    }

    /// Deletes the custom role `name`; returns whether it existed.
    pub fn delete(&self, name: &str) -> Result<bool, SecurityError> {
        if builtin(name).is_some() {
            return Err(SecurityError::Refused(format!(
                "role [{name}] is reserved and cannot be deleted"
            )));
        }
        self.file
            .update(|file| Ok(file.roles.remove(name).is_some()))
    }
}
