//! Elasticsearch's privileges by name, as the action-name patterns each grants.
//!
//! Every request is an *action* with Elasticsearch's name (`indices:data/read/search`,
//! `cluster:admin/xpack/ccr/auto_follow_pattern/put`, ...); a privilege grants the actions
//! its patterns match. Cluster privileges grant `cluster:*` actions, index privileges grant
//! `indices:*` actions on the indices their name patterns match. Action and index patterns
//! match as index expressions do ([`wildcard_matches`]: `*` is any run of characters).

use crate::rest::index_expression::wildcard_matches;

/// The cluster privileges Tandem knows, with the action patterns each grants.
pub const CLUSTER_PRIVILEGES: &[(&str, &[&str])] = &[
    ("all", &["cluster:*"]),
    ("monitor", &["cluster:monitor/*"]),
    (
        "manage",
        &[
            "cluster:monitor/*",
            "cluster:admin/settings/*",
            "cluster:admin/xpack/ccr/*",
            "cluster:admin/nodes/reload_secure_settings",
        ],
    ),
    (
        "manage_ccr",
        &[
            "cluster:admin/xpack/ccr/*",
            "cluster:monitor/state",
            "cluster:monitor/ccr/*",
        ],
    ),
    (
        "read_ccr",
        &[
            "cluster:monitor/state",
            "cluster:monitor/ccr/*",
            "cluster:internal/tandem/transport/*",
        ],
    ),
    ("manage_security", &["cluster:admin/xpack/security/*"]),
    (
        "manage_api_key",
        &["cluster:admin/xpack/security/api_key/*"],
    ),
    (
        "manage_own_api_key",
        &["cluster:admin/xpack/security/api_key/*"],
    ),
];

/// The index privileges Tandem knows, with the action patterns each grants.
pub const INDEX_PRIVILEGES: &[(&str, &[&str])] = &[
    ("all", &["indices:*"]),
    ("read", &["indices:data/read/*"]),
    ("write", &["indices:data/write/*"]),
    ("create_index", &["indices:admin/create"]),
    ("delete_index", &["indices:admin/delete"]),
    ("manage", &["indices:admin/*", "indices:monitor/*"]),
    ("monitor", &["indices:monitor/*"]),
    (
        "view_index_metadata",
        &[
            "indices:admin/get",
            "indices:admin/aliases/get",
            "indices:admin/mappings/get",
            "indices:monitor/settings/get",
        ],
    ),
    (
        "manage_follow_index",
        &[
            "indices:admin/xpack/ccr/put_follow",
            "indices:admin/xpack/ccr/unfollow",
            "indices:admin/xpack/ccr/promote",
            "indices:admin/xpack/ccr/failback",
            "indices:admin/close",
            "indices:admin/open",
        ],
    ),
    (
        "manage_leader_index",
        &["indices:admin/xpack/ccr/forget_follower"],
    ),
];

fn grants(table: &[(&str, &[&str])], privilege: &str, action: &str) -> bool {
    table
        .iter()
        .find(|(name, _)| *name == privilege)
        .is_some_and(|(_, patterns)| patterns.iter().any(|p| wildcard_matches(p, action)))
}

/// Whether the cluster privilege `privilege` grants `action`.
pub fn cluster_grants(privilege: &str, action: &str) -> bool {
    grants(CLUSTER_PRIVILEGES, privilege, action)
}

/// Whether the index privilege `privilege` grants `action`.
pub fn index_grants(privilege: &str, action: &str) -> bool {
    grants(INDEX_PRIVILEGES, privilege, action)
}

/// The names of the cluster privileges that grant `action` (for refusal messages).
pub fn cluster_privileges_granting(action: &str) -> Vec<&'static str> {
    privileges_granting(CLUSTER_PRIVILEGES, action)
}

/// The names of the index privileges that grant `action` (for refusal messages).
pub fn index_privileges_granting(action: &str) -> Vec<&'static str> {
    privileges_granting(INDEX_PRIVILEGES, action)
}

fn privileges_granting(table: &[(&'static str, &[&str])], action: &str) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = table
        .iter()
        .filter(|(_, patterns)| patterns.iter().any(|p| wildcard_matches(p, action)))
        .map(|(name, _)| *name)
        .collect();
    // Elasticsearch lists the narrowest first and `all` last.
    names.sort_by_key(|name| (*name == "all", *name == "manage", *name));
    names
}

/// Whether `name` is a known cluster privilege.
pub fn is_cluster_privilege(name: &str) -> bool {
    CLUSTER_PRIVILEGES.iter().any(|(known, _)| *known == name)
}

/// Whether `name` is a known index privilege.
pub fn is_index_privilege(name: &str) -> bool {
    INDEX_PRIVILEGES.iter().any(|(known, _)| *known == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_elasticsearch_patterns() {
        assert!(wildcard_matches(
            "indices:data/read/*",
            "indices:data/read/search"
        ));
        assert!(!wildcard_matches(
            "indices:data/read/*",
            "indices:data/write/index"
        ));
        assert!(wildcard_matches("logs-*", "logs-2026"));
        assert!(wildcard_matches("*", ""));
        assert!(wildcard_matches("a*b*c", "axxbyyc"));
        assert!(!wildcard_matches("a*b*c", "axxbyy"));
        assert!(wildcard_matches("exact", "exact"));
        assert!(!wildcard_matches("exact", "exactly"));
    }

    #[test]
    fn privileges_grant_their_actions_and_name_themselves_in_refusals() {
        assert!(index_grants("read", "indices:data/read/search"));
        assert!(!index_grants("read", "indices:data/write/index"));
        assert!(index_grants(
            "manage_follow_index",
            "indices:admin/xpack/ccr/put_follow"
        ));
        assert!(cluster_grants(
            "manage_ccr",
            "cluster:admin/xpack/ccr/auto_follow_pattern/put"
        ));
        assert!(!cluster_grants("monitor", "cluster:admin/settings/update"));
        assert!(!cluster_grants(
            "manage",
            "cluster:admin/xpack/security/user/put"
        ));
        assert_eq!(
            index_privileges_granting("indices:data/read/search"),
            ["read", "all"]
        );
        assert_eq!(
            cluster_privileges_granting("cluster:monitor/main"),
            ["monitor", "manage", "all"]
        );
    }
}
