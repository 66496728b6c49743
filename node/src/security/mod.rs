//! Security (DESIGN.md §9, Elasticsearch 8's model in its terms): who a request is.
//!
//! - [`api_keys`]: API keys (`Authorization: ApiKey`), created by users for themselves.
//! - [`keystore`]: secure settings (remote clusters' credentials), `tandem keystore`.
//! - [`privileges`]: Elasticsearch's privilege names and the actions each grants.
//! - [`roles`]: built-in and custom roles (`/_security/role`).
//! - [`secrets`]: password hashes, random tokens, constant-time comparison.
//! - [`shared_file`]: a JSON security file the node and the command line both change.
//! - [`users`]: the native users file, shared with `tandem users`.
//!
//! With `security.enabled`, every REST request carries credentials (`Authorization: Basic` or
//! `ApiKey`),
//! and a request without valid ones is answered 401 with `WWW-Authenticate` and
//! Elasticsearch's `security_exception` body before any handler runs. Guarantees:
//! - a password is verified against its argon2id hash; a successful verification is cached
//!   (keyed by a salted SHA-256 of the password, never the password) for
//!   [`AUTH_CACHE_TTL`], in at most [`MAX_CACHED_AUTHENTICATIONS`] entries, and dropped when
//!   the users change;
//! - a secret is never logged or echoed: errors name the user, never the password;
//! - the first start with security on and no users creates the `elastic` superuser with a
//!   generated password (or `ELASTIC_PASSWORD`'s), which the node prints once.

pub mod api_keys;
pub mod keystore;
pub mod privileges;
pub mod roles;
pub mod secrets;
pub mod shared_file;
pub mod users;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use tandem_engine::storage::StorageRef;

use crate::error::RestError;
pub use api_keys::ApiKeyStore;
pub use roles::{RoleDescriptor, RoleStore};
pub use users::{SecurityError, User, UserStore, ELASTIC};

/// How long a verified password stays cached (Elasticsearch's realm `cache.ttl`).
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(20 * 60);
/// Most cached authentications; the cache is emptied when full (each entry is a user name
/// and 32 bytes).
pub const MAX_CACHED_AUTHENTICATIONS: usize = 10_000;
/// Longest `Authorization` header read (a Basic header of the longest user name and password
/// fits well within it).
pub const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;
/// The environment variable that sets the `elastic` user's first password (as
/// Elasticsearch's Docker image reads it).
pub const ELASTIC_PASSWORD_ENV: &str = "ELASTIC_PASSWORD";
/// The role every privilege belongs to.
pub const SUPERUSER_ROLE: &str = "superuser";

/// Failed authentications one client address may make in a burst before it must wait.
pub const MAX_FAILED_AUTHENTICATIONS: u32 = 20;
/// One failed authentication of an address is forgiven every this long (20 a minute, after
/// the burst).
pub const FAILED_AUTHENTICATION_FORGIVEN_EVERY: Duration = Duration::from_secs(3);
/// Client addresses whose failures are tracked at once (each entry is an address, a count and
/// an instant); past it, forgiven ones go first, then any.
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// Failed authentications per client address, forgiven over time: an address that failed
/// [`MAX_FAILED_AUTHENTICATIONS`] times recently is refused (429) before its credentials are
/// even checked, so no one guesses passwords at the speed of argon2.
#[derive(Default)]
pub struct FailedAuthentications {
    by_address: Mutex<HashMap<std::net::IpAddr, (u32, Instant)>>,
}

impl FailedAuthentications {
    /// The failures of an entry still counted at `now`.
    fn outstanding((failures, since): (u32, Instant), now: Instant) -> (u32, Instant) {
        let every = FAILED_AUTHENTICATION_FORGIVEN_EVERY.as_millis().max(1);
        let forgiven = now.saturating_duration_since(since).as_millis() / every;
        let forgiven = u32::try_from(forgiven).unwrap_or(u32::MAX);
        if forgiven == 0 {
            return (failures, since);
        }
        let left = failures.saturating_sub(forgiven);
        // The forgiving clock restarts where the last forgiven failure left it.
        let advanced = since + FAILED_AUTHENTICATION_FORGIVEN_EVERY * forgiven.min(failures);
        (left, if left == 0 { now } else { advanced })
    }

    /// How long `address` must wait before it may try again, if it must.
    pub fn blocked(&self, address: std::net::IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let mut map = self.by_address.lock();
        let entry = map.get_mut(&address)?;
        *entry = Self::outstanding(*entry, now);
        let (failures, since) = *entry;
        if failures < MAX_FAILED_AUTHENTICATIONS {
            return None;
        }
        let next = since + FAILED_AUTHENTICATION_FORGIVEN_EVERY;
        Some(
            next.saturating_duration_since(now)
                .max(Duration::from_secs(1)),
        )
    }

    /// Counts a failed authentication of `address`.
    pub fn record(&self, address: std::net::IpAddr) {
        let now = Instant::now();
        let mut map = self.by_address.lock();
        if !map.contains_key(&address) && map.len() >= MAX_TRACKED_ADDRESSES {
            map.retain(|_, entry| Self::outstanding(*entry, now).0 > 0);
            if map.len() >= MAX_TRACKED_ADDRESSES {
                if let Some(any) = map.keys().next().copied() {
                    map.remove(&any);
                }
            }
        }
        let entry = map.entry(address).or_insert((0, now));
        let (failures, since) = Self::outstanding(*entry, now);
        *entry = (failures.saturating_add(1), since);
    }
}

/// Who a request is.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    /// The user name.
    pub username: String,
    /// The user's roles.
    pub roles: Vec<String>,
    /// The stored user (for `_authenticate`).
    pub user: Value,
    /// `realm` for a user's password, `api_key` for an API key.
    pub authentication_type: &'static str,
    /// The API key authenticated with: its id and name.
    pub api_key: Option<(String, String)>,
    /// The descriptors of `roles` that exist, read once when the request authenticated (a
    /// role change applies from the next request; no role file is read per check).
    pub role_descriptors: Vec<RoleDescriptor>,
    /// An API key's own role descriptors: when there are some, an action must be granted by
    /// one of them as well as by the owner's roles.
    pub key_roles: Vec<RoleDescriptor>,
    /// A cross-cluster API key's `access.replication` index name patterns: such a key reaches
    /// the transport only, and only for those indices.
    pub cross_cluster: Option<Vec<String>>,
}

/// Credentials as a request presents them.
#[derive(PartialEq)]
enum Credentials {
    Basic { username: String, password: String },
    ApiKey { id: String, key: String },
}

impl std::fmt::Debug for Credentials {
    /// Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username})"),
            Credentials::ApiKey { id, .. } => write!(f, "ApiKey({id})"),
        }
    }
}

/// Why a request is not authenticated.
#[derive(Debug, PartialEq)]
enum AuthFailure {
    /// No `Authorization` header, or a scheme this node does not read.
    Missing,
    /// A header that does not decode.
    Malformed,
    /// A user that does not exist, is disabled, or whose password is wrong.
    User(String),
    /// An API key that does not exist, expired, was invalidated, or whose secret is wrong.
    ApiKey,
}

/// The node's security state: whether it is on, and its users.
pub struct Security {
    enabled: bool,
    users: UserStore,
    api_keys: ApiKeyStore,
    roles: RoleStore,
    cache: Mutex<HashMap<String, CachedAuthentication>>,
    /// Failed authentications per client address.
    pub failures: FailedAuthentications,
    /// Salt of the cache's password digests, new per process.
    cache_salt: [u8; 32],
}

struct CachedAuthentication {
    digest: [u8; 32],
    generation: u64,
    at: Instant,
}

/// The password of the `elastic` user a first start created, to print once.
#[derive(PartialEq, Eq)]
pub enum Bootstrap {
    /// Generated: print it.
    Generated(String),
    /// Taken from [`ELASTIC_PASSWORD_ENV`]: do not print it.
    FromEnvironment,
}

impl std::fmt::Debug for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bootstrap::Generated(_) => f.write_str("Generated(..)"),
            Bootstrap::FromEnvironment => f.write_str("FromEnvironment"),
        }
    }
}

impl Security {
    /// Opens the security state of `data`. With `enabled` and no user yet, creates the
    /// `elastic` superuser and returns its password to print.
    pub fn open(
        storage: StorageRef,
        data: &Path,
        enabled: bool,
    ) -> Result<(Security, Option<Bootstrap>), SecurityError> {
        let users = UserStore::open(storage.clone(), data)?;
        let api_keys = ApiKeyStore::open(storage.clone(), data)?;
        let roles = RoleStore::open(storage, data)?;
        let mut bootstrap = None;
        if enabled && users.all()?.is_empty() {
            let (password, shown) = match std::env::var(ELASTIC_PASSWORD_ENV) {
                Ok(password) if !password.is_empty() => {
                    secrets::check_new_password(&password).map_err(|reason| {
                        SecurityError::Refused(format!("{ELASTIC_PASSWORD_ENV}: {reason}"))
                    })?;
                    (password, Bootstrap::FromEnvironment)
                }
                _ => {
                    let password = secrets::random_token::<15>();
                    (password.clone(), Bootstrap::Generated(password))
                }
            };
            let created = users.update(|all| {
                if !all.is_empty() {
                    return Ok(false);
                }
                all.insert(ELASTIC.to_string(), superuser(&password));
                Ok(true)
            })?;
            if created {
                bootstrap = Some(shown);
            }
        }
        Ok((
            Security {
                enabled,
                users,
                api_keys,
                roles,
                cache: Mutex::new(HashMap::new()),
                failures: FailedAuthentications::default(),
                cache_salt: secrets::random_bytes::<32>(),
            },
            bootstrap,
        ))
    }

    /// Whether requests must authenticate.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The users.
    pub fn users(&self) -> &UserStore {
        &self.users
    }

    /// The API keys.
    pub fn api_keys(&self) -> &ApiKeyStore {
        &self.api_keys
    }

    /// The roles.
    pub fn roles(&self) -> &RoleStore {
        &self.roles
    }

    /// Whether `principal` may run the action `granted` checks with its roles (and, for an API
    /// key with role descriptors, with those too).
    fn allows(&self, principal: &Principal, granted: impl Fn(&RoleDescriptor) -> bool) -> bool {
        principal.role_descriptors.iter().any(&granted)
            && (principal.key_roles.is_empty() || principal.key_roles.iter().any(&granted))
    }

    /// The descriptors of the roles `names` that exist (an unreadable roles file grants
    /// nothing, and says so in the log).
    fn resolve_roles(&self, names: &[String]) -> Vec<RoleDescriptor> {
        names
            .iter()
            .filter_map(|name| match self.roles.get(name) {
                Ok(role) => role,
                Err(error) => {
                    tracing::error!(%error, "the roles file cannot be read");
                    None
                }
            })
            .collect()
    }

    /// Refuses `principal` the cluster action `action` unless a role grants it.
    pub fn check_cluster(&self, principal: &Principal, action: &str) -> Result<(), RestError> {
        if self.allows(principal, |role| role.grants_cluster(action)) {
            return Ok(());
        }
        Err(self.refusal(
            principal,
            action,
            None,
            &format!(
                "cluster privileges [{}]",
                privileges::cluster_privileges_granting(action).join(",")
            ),
        ))
    }

    /// Refuses `principal` the index action `action` unless a role grants it on every one of
    /// `indices`.
    pub fn check_indices(
        &self,
        principal: &Principal,
        action: &str,
        indices: &[String],
    ) -> Result<(), RestError> {
        let refused: Vec<&str> = indices
            .iter()
            .filter(|index| !self.allows(principal, |role| role.grants_index(action, index)))
            .map(String::as_str)
            .collect();
        if refused.is_empty() {
            return Ok(());
        }
        Err(self.refusal(
            principal,
            action,
            Some(&refused),
            &format!(
                "index privileges [{}]",
                privileges::index_privileges_granting(action).join(",")
            ),
        ))
    }

    /// Whether `principal` may read the leader index `index` through the transport (a
    /// follower's reads, leases and recoveries): a cross-cluster key's `replication` names
    /// must match it; a user (or REST key) needs `read` on it.
    pub fn check_transport_index(&self, principal: &Principal, index: &str) -> Result<(), String> {
        const ACTION: &str = "indices:data/read/xpack/ccr/shard_changes";
        match &principal.cross_cluster {
            Some(names) => {
                if names
                    .iter()
                    .any(|pattern| crate::rest::index_expression::wildcard_matches(pattern, index))
                {
                    return Ok(());
                }
                let (id, _) = principal.api_key.clone().unwrap_or_default();
                Err(format!(
                    "action [{ACTION}] towards remote cluster is unauthorized for API key id [{id}] of user [{}] on indices [{index}], this action is granted by the index privileges [cross_cluster_replication]: the key's access.replication names are [{}]",
                    principal.username,
                    names.join(",")
                ))
            }
            None => self
                .check_indices(principal, ACTION, &[index.to_string()])
                .map_err(|error| error.reason),
        }
    }

    /// Elasticsearch's 403 for a refused action.
    fn refusal(
        &self,
        principal: &Principal,
        action: &str,
        indices: Option<&[&str]>,
        granted_by: &str,
    ) -> RestError {
        let mut roles = principal.roles.clone();
        roles.sort();
        let who = match &principal.api_key {
            Some((id, _)) => format!("API key id [{id}] of user [{}]", principal.username),
            None => format!(
                "user [{}] with effective roles [{}]",
                principal.username,
                roles.join(",")
            ),
        };
        let on = indices
            .map(|indices| format!(" on indices [{}]", indices.join(",")))
            .unwrap_or_default();
        RestError::new(
            StatusCode::FORBIDDEN,
            "security_exception",
            format!("action [{action}] is unauthorized for {who}{on}, this action is granted by the {granted_by}"),
        )
    }

    /// Authenticates a request from its headers; `path` names it in the error. Blocking (an
    /// argon2 verification takes tens of milliseconds): call from the blocking pool.
    pub fn authenticate(&self, headers: &HeaderMap, path: &str) -> Result<Principal, RestError> {
        match self.authenticate_with(headers, path, true) {
            Ok(principal) => principal.ok_or_else(|| {
                RestError::internal("a password verification was skipped where it may not be")
            }),
            Err(error) => Err(error),
        }
    }

    /// [`Security::authenticate`] without the slow path: `Ok(None)` when the request's
    /// password is not in the cache and needs an argon2 verification (then call
    /// `authenticate` from the blocking pool). Cheap enough for a runtime worker.
    pub fn authenticate_cached(
        &self,
        headers: &HeaderMap,
        path: &str,
    ) -> Result<Option<Principal>, RestError> {
        self.authenticate_with(headers, path, false)
    }

    fn authenticate_with(
        &self,
        headers: &HeaderMap,
        path: &str,
        verify: bool,
    ) -> Result<Option<Principal>, RestError> {
        let result = parse_authorization(headers).and_then(|credentials| match credentials {
            Credentials::Basic { username, password } => {
                self.authenticate_user(&username, &password, verify)
            }
            Credentials::ApiKey { id, key } => self.authenticate_api_key(&id, &key).map(Some),
        });
        let principal = result.map_err(|failure| unauthenticated(&failure, path))?;
        Ok(principal.map(|mut principal| {
            principal.role_descriptors = self.resolve_roles(&principal.roles);
            principal
        }))
    }

    /// `Ok(None)`: not cached, and `verify` is false.
    fn authenticate_user(
        &self,
        username: &str,
        password: &str,
        verify: bool,
    ) -> Result<Option<Principal>, AuthFailure> {
        let refused = || AuthFailure::User(username.to_string());
        let user = self
            .users
            .get(username)
            .map_err(|error| {
                tracing::error!(%error, "the users file cannot be read");
                refused()
            })?
            .ok_or_else(refused)?;
        if !user.enabled {
            return Err(refused());
        }
        let generation = self.users.generation();
        let digest = self.cache_digest(password);
        let cached = self.cache.lock().get(username).is_some_and(|cached| {
            cached.generation == generation
                && cached.at.elapsed() < AUTH_CACHE_TTL
                && secrets::constant_time_eq(&cached.digest, &digest)
        });
        if !cached {
            if !verify {
                return Ok(None);
            }
            if !secrets::verify_password(password, &user.password_hash) {
                return Err(refused());
            }
            let mut cache = self.cache.lock();
            if cache.len() >= MAX_CACHED_AUTHENTICATIONS {
                cache.clear();
            }
            cache.insert(
                username.to_string(),
                CachedAuthentication {
                    digest,
                    generation,
                    at: Instant::now(),
                },
            );
        }
        Ok(Some(Principal {
            username: username.to_string(),
            roles: user.roles.clone(),
            user: user.to_json(username),
            authentication_type: "realm",
            api_key: None,
            role_descriptors: Vec::new(),
            key_roles: Vec::new(),
            cross_cluster: None,
        }))
    }

    fn authenticate_api_key(&self, id: &str, secret: &str) -> Result<Principal, AuthFailure> {
        let key = self
            .api_keys
            .authenticate(id, secret)
            .map_err(|error| {
                tracing::error!(%error, "the API keys file cannot be read");
                AuthFailure::ApiKey
            })?
            .ok_or(AuthFailure::ApiKey)?;
        // The owner must still be there and enabled.
        let owner = self
            .users
            .get(&key.username)
            .ok()
            .flatten()
            .filter(|owner| owner.enabled)
            .ok_or(AuthFailure::ApiKey)?;
        // Descriptors were checked when the key was made; one that no longer parses grants
        // nothing (an empty role), it does not widen the key to its owner's roles.
        let key_roles = key
            .role_descriptors
            .values()
            .map(|descriptor| {
                serde_json::from_value::<RoleDescriptor>(descriptor.clone()).unwrap_or_default()
            })
            .collect();
        let cross_cluster = (key.key_type == api_keys::CROSS_CLUSTER_KEY)
            .then(|| api_keys::replication_names(key.access.as_ref()));
        Ok(Principal {
            username: key.username.clone(),
            roles: key.limited_by.clone(),
            user: owner.to_json(&key.username),
            authentication_type: "api_key",
            api_key: Some((id.to_string(), key.name.clone())),
            role_descriptors: Vec::new(),
            key_roles,
            cross_cluster,
        })
    }

    fn cache_digest(&self, password: &str) -> [u8; 32] {
        let mut salted = Vec::with_capacity(32 + password.len());
        salted.extend_from_slice(&self.cache_salt);
        salted.extend_from_slice(password.as_bytes());
        secrets::sha256(&salted)
    }
}

/// A new superuser with `password`.
pub fn superuser(password: &str) -> User {
    User {
        password_hash: secrets::hash_password(password),
        roles: vec![SUPERUSER_ROLE.to_string()],
        full_name: None,
        email: None,
        metadata: Map::new(),
        enabled: true,
    }
}

fn parse_authorization(headers: &HeaderMap) -> Result<Credentials, AuthFailure> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(AuthFailure::Missing);
    };
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err(AuthFailure::Malformed);
    }
    let value = value.to_str().map_err(|_| AuthFailure::Malformed)?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .map_err(|_| AuthFailure::Malformed)?;
        let decoded = String::from_utf8(decoded).map_err(|_| AuthFailure::Malformed)?;
        let (username, password) = decoded.split_once(':').ok_or(AuthFailure::Malformed)?;
        return Ok(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        });
    }
    if scheme.eq_ignore_ascii_case("apikey") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .map_err(|_| AuthFailure::Malformed)?;
        let decoded = String::from_utf8(decoded).map_err(|_| AuthFailure::Malformed)?;
        let (id, key) = decoded.split_once(':').ok_or(AuthFailure::Malformed)?;
        return Ok(Credentials::ApiKey {
            id: id.to_string(),
            key: key.to_string(),
        });
    }
    Err(AuthFailure::Missing)
}

/// The `WWW-Authenticate` challenges a 401 carries.
pub const CHALLENGES: [&str; 2] = ["Basic realm=\"security\", charset=\"UTF-8\"", "ApiKey"];

fn unauthenticated(failure: &AuthFailure, path: &str) -> RestError {
    let reason = match failure {
        AuthFailure::Missing => {
            format!("missing authentication credentials for REST request [{path}]")
        }
        AuthFailure::Malformed => {
            format!("invalid authentication credentials for REST request [{path}]")
        }
        AuthFailure::User(username) => {
            format!("unable to authenticate user [{username}] for REST request [{path}]")
        }
        AuthFailure::ApiKey => "unable to authenticate with provided credentials and anonymous access is not allowed for this request".to_string(),
    };
    RestError::new(StatusCode::UNAUTHORIZED, "security_exception", reason)
        .with("header", json!({"WWW-Authenticate": CHALLENGES}))
}

/// A 401 answer: the error body and its `WWW-Authenticate` headers.
pub fn unauthorized_response(error: RestError) -> Response {
    let mut response = error.into_response();
    for challenge in CHALLENGES {
        response.headers_mut().append(
            axum::http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_authentications_are_limited_per_address_and_forgiven_over_time() {
        let failures = FailedAuthentications::default();
        let (guesser, other) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..MAX_FAILED_AUTHENTICATIONS - 1 {
            failures.record(guesser);
            assert_eq!(failures.blocked(guesser), None);
        }
        failures.record(guesser);
        let wait = failures.blocked(guesser).expect("blocked after the burst");
        assert!(wait <= FAILED_AUTHENTICATION_FORGIVEN_EVERY.max(Duration::from_secs(1)));
        assert_eq!(failures.blocked(other), None, "another address is not");
        // Forgiven as time passes.
        let past = Instant::now() - FAILED_AUTHENTICATION_FORGIVEN_EVERY * 2;
        let (left, _) =
            FailedAuthentications::outstanding((MAX_FAILED_AUTHENTICATIONS, past), Instant::now());
        assert_eq!(left, MAX_FAILED_AUTHENTICATIONS - 2);
        let long_ago = Instant::now() - FAILED_AUTHENTICATION_FORGIVEN_EVERY * 1000;
        assert_eq!(
            FailedAuthentications::outstanding((5, long_ago), Instant::now()).0,
            0
        );
    }

    fn basic(username: &str, password: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        headers.insert(
            axum::http::header::AUTHORIZATION,
            format!("Basic {token}").parse().unwrap(),
        );
        headers
    }

    #[test]
    fn the_first_start_creates_elastic_once_and_basic_credentials_authenticate() {
        let dir = tempfile::tempdir().unwrap();
        let storage = tandem_engine::storage::real();
        let (security, bootstrap) = Security::open(storage.clone(), dir.path(), true).unwrap();
        let Some(Bootstrap::Generated(password)) = bootstrap else {
            panic!("no password generated: {bootstrap:?}");
        };
        let principal = security
            .authenticate(&basic(ELASTIC, &password), "/")
            .unwrap();
        assert_eq!(principal.username, ELASTIC);
        assert_eq!(principal.roles, [SUPERUSER_ROLE]);
        // Cached, and still checked.
        security
            .authenticate(&basic(ELASTIC, &password), "/")
            .unwrap();
        let wrong = security
            .authenticate(&basic(ELASTIC, "wrong-password"), "/_cluster/health")
            .unwrap_err();
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert_eq!(wrong.error_type, "security_exception");
        assert_eq!(
            wrong.reason,
            "unable to authenticate user [elastic] for REST request [/_cluster/health]"
        );
        assert!(!wrong.reason.contains("wrong-password"));
        let missing = security.authenticate(&HeaderMap::new(), "/").unwrap_err();
        assert_eq!(
            missing.reason,
            "missing authentication credentials for REST request [/]"
        );
        // A second start does not create it again.
        drop(security);
        let (_, again) = Security::open(storage, dir.path(), true).unwrap();
        assert_eq!(again, None);
    }

    #[test]
    fn a_password_change_ends_cached_authentications() {
        let dir = tempfile::tempdir().unwrap();
        let storage = tandem_engine::storage::real();
        let (security, _) = Security::open(storage.clone(), dir.path(), true).unwrap();
        security
            .users()
            .update(|users| {
                users.insert("ops".into(), superuser("first-password"));
                Ok(())
            })
            .unwrap();
        security
            .authenticate(&basic("ops", "first-password"), "/")
            .unwrap();
        // `tandem users passwd`, from another store on the same files.
        let cli = UserStore::open(storage, dir.path()).unwrap();
        cli.update(|users| {
            users.insert("ops".into(), superuser("second-password"));
            Ok(())
        })
        .unwrap();
        assert!(security
            .authenticate(&basic("ops", "first-password"), "/")
            .is_err());
        security
            .authenticate(&basic("ops", "second-password"), "/")
            .unwrap();
    }

    #[test]
    fn malformed_headers_are_refused_without_echoing_them() {
        let dir = tempfile::tempdir().unwrap();
        let (security, _) =
            Security::open(tandem_engine::storage::real(), dir.path(), true).unwrap();
        for value in ["Basic !!!", "Basic bm9jb2xvbg==", "Bearer abc", "Basic"] {
            let mut headers = HeaderMap::new();
            headers.insert(axum::http::header::AUTHORIZATION, value.parse().unwrap());
            let error = security.authenticate(&headers, "/").unwrap_err();
            assert_eq!(error.status, StatusCode::UNAUTHORIZED, "{value}");
        }
    }
}
