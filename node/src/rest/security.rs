//! The `/_security` API (users): `GET /_security/_authenticate`,
//! `PUT|POST|GET|DELETE /_security/user/{name}`, `GET /_security/user`,
//! `PUT|POST /_security/user[/{name}]/_password`, `PUT|POST /_security/user/{name}/_enable`
//! and `_disable`, and `POST|GET|DELETE /_security/api_key`, in Elasticsearch's shapes.
//!
//! A user creates API keys for itself (holding its roles as they are then); a superuser sees
//! and invalidates every key, another user only its own.
//!
//! Managing users needs the `superuser` role (which holds `manage_security`); a user may
//! always change their own password. Passwords arrive in request bodies and leave only as
//! argon2id hashes: no answer, error or log line carries one.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::{json, Map, Value};

use super::{ok, JsonBody, NodeState, Params};
use crate::error::RestError;
use crate::security::users::{check_username, User};
use crate::security::{secrets, Principal, SecurityError, ELASTIC};

/// The routes of this module.
pub fn routes() -> Router<NodeState> {
    Router::new()
        .route("/_security/_authenticate", get(authenticate))
        .route("/_security/user", get(get_users))
        .route(
            "/_security/user/{name}",
            get(get_user)
                .put(put_user)
                .post(put_user)
                .delete(delete_user),
        )
        .route(
            "/_security/user/_password",
            post(change_own_password).put(change_own_password),
        )
        .route(
            "/_security/user/{name}/_password",
            post(change_password).put(change_password),
        )
        .route(
            "/_security/user/{name}/_enable",
            post(enable_user).put(enable_user),
        )
        .route(
            "/_security/user/{name}/_disable",
            post(disable_user).put(disable_user),
        )
        .route("/_security/role", get(get_roles))
        .route(
            "/_security/role/{name}",
            get(get_role)
                .put(put_role)
                .post(put_role)
                .delete(delete_role),
        )
        .route(
            "/_security/cross_cluster/api_key",
            post(create_cross_cluster_api_key),
        )
        .route(
            "/_security/api_key",
            post(create_api_key)
                .put(create_api_key)
                .get(get_api_keys)
                .delete(invalidate_api_keys),
        )
}

type Caller = Option<Extension<Arc<Principal>>>;

/// The authenticated caller, or Elasticsearch's answer when security is off.
fn caller(node: &NodeState, caller: Caller) -> Result<Arc<Principal>, RestError> {
    match caller {
        Some(Extension(principal)) if node.security.enabled() => Ok(principal),
        _ => Err(RestError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "security_exception",
            "Security is not enabled on this node: start it with --security (security.enabled: true) to use the security API",
        )),
    }
}

/// Refuses a caller the cluster action `action` unless one of its roles grants it, in
/// Elasticsearch's words (the router checked the route's own action already; handlers call
/// this for what depends on the request, as someone else's password).
fn require(node: &NodeState, principal: &Principal, action: &str) -> Result<(), RestError> {
    node.security.check_cluster(principal, action)
}

fn security_error(error: SecurityError) -> RestError {
    match error {
        SecurityError::Refused(reason) => RestError::new(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            reason,
        ),
        other => RestError::internal(other.to_string()),
    }
}

/// A delete's answer: `{"found": true}`, or 404 with `{"found": false}`.
fn found_answer(found: bool) -> Response {
    let status = if found {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    (status, axum::Json(json!({"found": found}))).into_response()
}

/// Runs `work` on the security files on the blocking pool (it hashes, locks and fsyncs);
/// `what` names it in an internal error.
async fn on_security_files<R: Send + 'static>(
    node: &NodeState,
    what: &'static str,
    work: impl FnOnce(&crate::security::Security) -> Result<R, SecurityError> + Send + 'static,
) -> Result<R, RestError> {
    let security = node.security.clone();
    tokio::task::spawn_blocking(move || work(&security))
        .await
        .map_err(|error| RestError::internal(format!("{what} failed: {error}")))?
        .map_err(security_error)
}

/// Runs a users-file change on the blocking pool.
async fn change_users<R: Send + 'static>(
    node: &NodeState,
    change: impl FnOnce(&mut std::collections::BTreeMap<String, User>) -> Result<R, SecurityError>
        + Send
        + 'static,
) -> Result<R, RestError> {
    on_security_files(node, "changing users", move |security| {
        security.users().update(change)
    })
    .await
}

async fn authenticate(
    State(node): State<NodeState>,
    principal: Caller,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&[])?;
    let principal = caller(&node, principal)?;
    let mut answer = principal.user.clone();
    let realm = json!({"name": "native", "type": "native"});
    answer["authentication_realm"] = realm.clone();
    answer["lookup_realm"] = realm;
    answer["authentication_type"] = json!(principal.authentication_type);
    if let Some((id, name)) = &principal.api_key {
        answer["api_key"] = json!({"id": id, "name": name});
        answer["authentication_realm"] = json!({"name": "_es_api_key", "type": "_es_api_key"});
        answer["lookup_realm"] = answer["authentication_realm"].clone();
    }
    Ok(ok(answer))
}

/// Whether the caller manages every user's API keys (`manage_api_key`, `manage_security`),
/// not only its own (`manage_own_api_key`).
fn manages_all_api_keys(principal: &Principal) -> bool {
    let action = "cluster:admin/xpack/security/api_key/manage_all";
    principal.role_descriptors.iter().any(|role| {
        role.cluster.iter().any(|privilege| {
            privilege != "manage_own_api_key"
                && crate::security::privileges::cluster_grants(privilege, action)
        })
    })
}

async fn create_api_key(
    State(node): State<NodeState>,
    principal: Caller,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, RestError> {
    params.allow(&["refresh"])?;
    let principal = caller(&node, principal)?;
    if principal.api_key.is_some() {
        return Err(RestError::illegal_argument(
            "an API key cannot create API keys: authenticate as the user",
        ));
    }
    let Some(Value::Object(fields)) = body else {
        return Err(RestError::parse("the API key body must be an object"));
    };
    let mut name = None;
    let mut expiration = None;
    let mut role_descriptors = Map::new();
    let mut metadata = Map::new();
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("name", Value::String(text)) => name = Some(text),
            ("expiration", Value::String(text)) => {
                expiration = Some(super::params::parse_time_value("expiration", &text)?)
            }
            ("expiration", Value::Null) => {}
            ("role_descriptors", Value::Object(descriptors)) => {
                for (role, descriptor) in &descriptors {
                    let parsed: crate::security::RoleDescriptor =
                        serde_json::from_value(descriptor.clone()).map_err(|error| {
                            RestError::parse(format!("failed to parse role [{role}]: {error}"))
                        })?;
                    parsed.validate().map_err(RestError::illegal_argument)?;
                }
                role_descriptors = descriptors
            }
            ("metadata", Value::Object(object)) => metadata = object,
            (other, _)
                if ["name", "expiration", "role_descriptors", "metadata"].contains(&other) =>
            {
                return Err(RestError::parse(format!("[{other}] has the wrong type")))
            }
            (other, _) => {
                return Err(RestError::parse(format!(
                    "failed to parse api key request. unexpected field [{other}]"
                )))
            }
        }
    }
    let name = name.ok_or_else(|| {
        RestError::new(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            "Validation Failed: 1: api key name is required;",
        )
    })?;
    store_api_key(
        &node,
        ApiKeyFields {
            name,
            expiration,
            username: principal.username.clone(),
            key_type: crate::security::api_keys::REST_KEY,
            role_descriptors,
            limited_by: principal.roles.clone(),
            access: None,
            metadata,
        },
    )
    .await
}

async fn get_api_keys(
    State(node): State<NodeState>,
    principal: Caller,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&[
        "id",
        "name",
        "username",
        "realm_name",
        "owner",
        "active_only",
        "with_limited_by",
        "with_profile_uid",
    ])?;
    let principal = caller(&node, principal)?;
    let owner_only = params.flag("owner", false)? || !manages_all_api_keys(&principal);
    let active_only = params.flag("active_only", false)?;
    let (id, name, username) = (params.get("id"), params.get("name"), params.get("username"));
    let now = crate::security::api_keys::now_millis();
    let keys = node.security.api_keys().all().map_err(security_error)?;
    let shown: Vec<Value> = keys
        .iter()
        .filter(|(key_id, key)| {
            id.is_none_or(|id| id == key_id.as_str())
                && name.is_none_or(|name| name == key.name)
                && username.is_none_or(|username| username == key.username)
                && (!owner_only || key.username == principal.username)
                && (!active_only || key.is_active(now))
        })
        .map(|(key_id, key)| key.to_json(key_id))
        .collect();
    if shown.is_empty() && (id.is_some() || name.is_some()) {
        return Err(RestError::new(
            StatusCode::NOT_FOUND,
            "resource_not_found_exception",
            "api key not found",
        ));
    }
    Ok(ok(json!({"api_keys": shown})))
}

async fn invalidate_api_keys(
    State(node): State<NodeState>,
    principal: Caller,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, RestError> {
    params.allow(&[])?;
    let principal = caller(&node, principal)?;
    let Some(Value::Object(fields)) = body else {
        return Err(RestError::parse(
            "the invalidate API key body must be an object",
        ));
    };
    let mut ids: Option<Vec<String>> = None;
    let mut name = None;
    let mut username = None;
    let mut owner = false;
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("id", Value::String(id)) => ids = Some(vec![id]),
            ("ids", Value::Array(list)) => {
                ids = Some(
                    list.into_iter()
                        .map(|id| match id {
                            Value::String(id) => Ok(id),
                            _ => Err(RestError::parse("[ids] must be strings")),
                        })
                        .collect::<Result<_, _>>()?,
                )
            }
            ("name", Value::String(text)) => name = Some(text),
            ("username", Value::String(text)) => username = Some(text),
            ("owner", Value::Bool(flag)) => owner = flag,
            ("realm_name", Value::String(_)) => {}
            (other, _) => {
                return Err(RestError::parse(format!(
                    "failed to parse invalidate api key request. unexpected field [{other}]"
                )))
            }
        }
    }
    if ids.is_none() && name.is_none() && username.is_none() && !owner {
        return Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            "Validation Failed: 1: One of [api key id(s), api key name, username, realm name] must be specified if [owner] flag is false;",
        ));
    }
    let owner_only = owner || !manages_all_api_keys(&principal);
    let me = principal.username.clone();
    let (invalidated, before) =
        on_security_files(&node, "invalidating API keys", move |security| {
            security.api_keys().invalidate(|id, key| {
                ids.as_ref()
                    .is_none_or(|ids| ids.iter().any(|wanted| wanted == id))
                    && name.as_ref().is_none_or(|name| *name == key.name)
                    && username
                        .as_ref()
                        .is_none_or(|username| *username == key.username)
                    && (!owner_only || key.username == me)
            })
        })
        .await?;
    Ok(ok(json!({
        "invalidated_api_keys": invalidated,
        "previously_invalidated_api_keys": before,
        "error_count": 0,
    })))
}

async fn get_users(
    State(node): State<NodeState>,
    principal: Caller,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["with_profile_uid"])?;
    caller(&node, principal)?;
    let users = node.security.users().all().map_err(security_error)?;
    let answer: Map<String, Value> = users
        .iter()
        .map(|(name, user)| (name.clone(), user.to_json(name)))
        .collect();
    Ok(ok(Value::Object(answer)))
}

async fn get_user(
    State(node): State<NodeState>,
    principal: Caller,
    Path(names): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["with_profile_uid"])?;
    caller(&node, principal)?;
    let users = node.security.users().all().map_err(security_error)?;
    let answer: Map<String, Value> = names
        .split(',')
        .filter_map(|name| {
            users
                .get(name)
                .map(|user| (name.to_string(), user.to_json(name)))
        })
        .collect();
    if answer.is_empty() {
        // Elasticsearch answers an unknown user with 404 and an empty object.
        return Ok((StatusCode::NOT_FOUND, axum::Json(json!({}))).into_response());
    }
    Ok(ok(Value::Object(answer)))
}

/// The fields of a `PUT /_security/user/{name}` body.
struct UserBody {
    password: Option<String>,
    password_hash: Option<String>,
    roles: Option<Vec<String>>,
    full_name: Option<Option<String>>,
    email: Option<Option<String>>,
    metadata: Option<Map<String, Value>>,
    enabled: Option<bool>,
}

fn parse_user_body(body: Value) -> Result<UserBody, RestError> {
    let Value::Object(fields) = body else {
        return Err(RestError::parse("the user body must be an object"));
    };
    let mut parsed = UserBody {
        password: None,
        password_hash: None,
        roles: None,
        full_name: None,
        email: None,
        metadata: None,
        enabled: None,
    };
    let string = |key: &str, value: Value| match value {
        Value::String(text) => Ok(text),
        _ => Err(RestError::parse(format!("[{key}] must be a string"))),
    };
    let optional_string = |key: &str, value: Value| match value {
        Value::Null => Ok(None),
        other => string(key, other).map(Some),
    };
    for (key, value) in fields {
        match key.as_str() {
            "password" => parsed.password = Some(string(&key, value)?),
            "password_hash" => parsed.password_hash = Some(string(&key, value)?),
            "roles" => {
                let Value::Array(roles) = value else {
                    return Err(RestError::parse("[roles] must be an array of strings"));
                };
                parsed.roles = Some(
                    roles
                        .into_iter()
                        .map(|role| string("roles", role))
                        .collect::<Result<_, _>>()?,
                );
            }
            "full_name" => parsed.full_name = Some(optional_string(&key, value)?),
            "email" => parsed.email = Some(optional_string(&key, value)?),
            "metadata" => match value {
                Value::Object(metadata) => parsed.metadata = Some(metadata),
                Value::Null => parsed.metadata = Some(Map::new()),
                _ => return Err(RestError::parse("[metadata] must be an object")),
            },
            "enabled" => match value {
                Value::Bool(enabled) => parsed.enabled = Some(enabled),
                _ => return Err(RestError::parse("[enabled] must be a boolean")),
            },
            other => {
                return Err(RestError::parse(format!(
                    "failed to parse add user request. unexpected field [{other}]"
                )))
            }
        }
    }
    Ok(parsed)
}

/// The stored hash of a new password, or of a given argon2 hash.
fn new_hash(password: Option<String>, hash: Option<String>) -> Result<Option<String>, RestError> {
    let invalid = |reason: String| {
        RestError::new(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            format!("Validation Failed: 1: {reason};"),
        )
    };
    match (password, hash) {
        (Some(_), Some(_)) => Err(invalid(
            "only one of [password, passwordHash] can be provided".to_string(),
        )),
        (Some(password), None) => {
            secrets::check_new_password(&password).map_err(invalid)?;
            Ok(Some(secrets::hash_password(&password)))
        }
        (None, Some(hash)) if secrets::is_password_hash(&hash) => Ok(Some(hash)),
        (None, Some(_)) => Err(invalid(
            "the provided password hash is not an argon2 hash".to_string(),
        )),
        (None, None) => Ok(None),
    }
}

async fn put_user(
    State(node): State<NodeState>,
    principal: Caller,
    Path(name): Path<String>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, RestError> {
    params.allow(&["refresh"])?;
    caller(&node, principal)?;
    check_username(&name).map_err(security_error)?;
    let body = parse_user_body(body.ok_or_else(|| RestError::parse("request body is required"))?)?;
    // Hashing takes a moment: on the blocking pool, with the rest of the change.
    let created = change_users(&node, move |users| {
        let hash = new_hash(body.password, body.password_hash)
            .map_err(|error| SecurityError::Refused(error.reason))?;
        let created = !users.contains_key(&name);
        let user = match users.get(&name).cloned() {
            Some(mut user) => {
                if let Some(hash) = hash {
                    user.password_hash = hash;
                }
                user
            }
            None => User {
                password_hash: hash.ok_or_else(|| {
                    SecurityError::Refused(
                        "Validation Failed: 1: password must be specified unless you are updating an existing user;".to_string(),
                    )
                })?,
                roles: Vec::new(),
                full_name: None,
                email: None,
                metadata: Map::new(),
                enabled: true,
            },
        };
        let user = User {
            roles: body.roles.unwrap_or(user.roles),
            full_name: body.full_name.unwrap_or(user.full_name),
            email: body.email.unwrap_or(user.email),
            metadata: body.metadata.unwrap_or(user.metadata),
            enabled: body.enabled.unwrap_or(user.enabled),
            password_hash: user.password_hash,
        };
        users.insert(name, user);
        Ok(created)
    })
    .await?;
    Ok(ok(json!({"created": created})))
}

async fn delete_user(
    State(node): State<NodeState>,
    principal: Caller,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["refresh"])?;
    let principal = caller(&node, principal)?;
    if name == ELASTIC {
        return Err(RestError::illegal_argument(format!(
            "user [{name}] is reserved and cannot be deleted"
        )));
    }
    if name == principal.username {
        return Err(RestError::illegal_argument(
            "users may not delete themselves",
        ));
    }
    let found = change_users(&node, move |users| Ok(users.remove(&name).is_some())).await?;
    Ok(found_answer(found))
}

async fn set_password(
    node: NodeState,
    principal: Arc<Principal>,
    name: String,
    body: Option<Value>,
) -> Result<Response, RestError> {
    if name != principal.username {
        require(
            &node,
            &principal,
            "cluster:admin/xpack/security/user/change_password",
        )?;
    }
    let body = parse_user_body(body.ok_or_else(|| RestError::parse("request body is required"))?)?;
    if body.roles.is_some()
        || body.full_name.is_some()
        || body.email.is_some()
        || body.metadata.is_some()
        || body.enabled.is_some()
    {
        return Err(RestError::parse(
            "a change password request takes [password] or [password_hash] only",
        ));
    }
    if body.password.is_none() && body.password_hash.is_none() {
        return Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            "Validation Failed: 1: password must be specified;",
        ));
    }
    let missing = name.clone();
    change_users(&node, move |users| {
        let hash = new_hash(body.password, body.password_hash)
            .map_err(|error| SecurityError::Refused(error.reason))?
            .expect("a password or a hash was given");
        let user = users
            .get_mut(&name)
            .ok_or_else(|| SecurityError::Refused(format!("user [{missing}] does not exist")))?;
        user.password_hash = hash;
        Ok(())
    })
    .await?;
    Ok(ok(json!({})))
}

async fn change_password(
    State(node): State<NodeState>,
    principal: Caller,
    Path(name): Path<String>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, RestError> {
    params.allow(&["refresh"])?;
    let principal = caller(&node, principal)?;
    set_password(node, principal, name, body).await
}

async fn change_own_password(
    State(node): State<NodeState>,
    principal: Caller,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, RestError> {
    params.allow(&["refresh"])?;
    let principal = caller(&node, principal)?;
    let name = principal.username.clone();
    set_password(node, principal, name, body).await
}

async fn set_enabled(
    node: NodeState,
    principal: Caller,
    name: String,
    enabled: bool,
) -> Result<Response, RestError> {
    let principal = caller(&node, principal)?;
    if !enabled && name == principal.username {
        return Err(RestError::illegal_argument(
            "users may not update the enabled status of their own account",
        ));
    }
    let missing = name.clone();
    change_users(&node, move |users| {
        let user = users
            .get_mut(&name)
            .ok_or_else(|| SecurityError::Refused(format!("user [{missing}] does not exist")))?;
        user.enabled = enabled;
        Ok(())
    })
    .await?;
    Ok(ok(json!({})))
}

async fn enable_user(
    State(node): State<NodeState>,
    principal: Caller,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["refresh"])?;
    set_enabled(node, principal, name, true).await
}

async fn disable_user(
    State(node): State<NodeState>,
    principal: Caller,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["refresh"])?;
    set_enabled(node, principal, name, false).await
}

/// Built-in roles first, then the custom ones, as the role API lists them.
fn roles_json(node: &NodeState, names: Option<&str>) -> Result<Map<String, Value>, RestError> {
    use crate::security::roles::{builtin, BUILTIN_ROLES};
    let custom = node.security.roles().custom().map_err(security_error)?;
    let mut all: Vec<(String, Value)> = BUILTIN_ROLES
        .iter()
        .filter_map(|name| builtin(name).map(|role| (name.to_string(), role.to_json(true))))
        .collect();
    all.extend(
        custom
            .iter()
            .map(|(name, role)| (name.clone(), role.to_json(false))),
    );
    Ok(all
        .into_iter()
        .filter(|(name, _)| names.is_none_or(|names| names.split(',').any(|n| n == name)))
        .collect())
}

async fn get_roles(
    State(node): State<NodeState>,
    principal: Caller,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&[])?;
    caller(&node, principal)?;
    Ok(ok(Value::Object(roles_json(&node, None)?)))
}

async fn get_role(
    State(node): State<NodeState>,
    principal: Caller,
    Path(names): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&[])?;
    caller(&node, principal)?;
    let found = roles_json(&node, Some(&names))?;
    if found.is_empty() {
        return Ok((StatusCode::NOT_FOUND, axum::Json(json!({}))).into_response());
    }
    Ok(ok(Value::Object(found)))
}

async fn put_role(
    State(node): State<NodeState>,
    principal: Caller,
    Path(name): Path<String>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, RestError> {
    params.allow(&["refresh"])?;
    caller(&node, principal)?;
    if name.is_empty() || name.len() > 507 {
        return Err(RestError::illegal_argument(format!(
            "invalid role name [{name}]"
        )));
    }
    let body = body.ok_or_else(|| RestError::parse("request body is required"))?;
    let mut body = match body {
        Value::Object(fields) => fields,
        _ => return Err(RestError::parse("the role body must be an object")),
    };
    // Accepted and empty in Tandem: applications, run_as, transient metadata.
    for ignored in ["applications", "run_as", "transient_metadata"] {
        match body.remove(ignored) {
            None => {}
            Some(Value::Array(list)) if list.is_empty() => {}
            Some(Value::Object(map)) if ignored == "transient_metadata" && map.len() <= 1 => {}
            Some(_) => {
                return Err(RestError::illegal_argument(format!(
                    "[{ignored}] is not supported by Tandem"
                )))
            }
        }
    }
    let role: crate::security::RoleDescriptor = serde_json::from_value(Value::Object(body))
        .map_err(|error| RestError::parse(format!("failed to parse role [{name}]: {error}")))?;
    let created = on_security_files(&node, "storing the role", move |security| {
        security.roles().put(&name, role)
    })
    .await?;
    Ok(ok(json!({"role": {"created": created}})))
}

async fn delete_role(
    State(node): State<NodeState>,
    principal: Caller,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["refresh"])?;
    caller(&node, principal)?;
    let found = on_security_files(&node, "deleting the role", move |security| {
        security.roles().delete(&name)
    })
    .await?;
    Ok(found_answer(found))
}

/// `POST /_security/cross_cluster/api_key`: a key a remote cluster's follower presents, good
/// for the transport only and for the indices its `access.replication` names.
async fn create_cross_cluster_api_key(
    State(node): State<NodeState>,
    principal: Caller,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, RestError> {
    params.allow(&[])?;
    let principal = caller(&node, principal)?;
    let Some(Value::Object(fields)) = body else {
        return Err(RestError::parse("the API key body must be an object"));
    };
    let mut name = None;
    let mut expiration = None;
    let mut access = None;
    let mut metadata = Map::new();
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("name", Value::String(text)) => name = Some(text),
            ("expiration", Value::String(text)) => {
                expiration = Some(super::params::parse_time_value("expiration", &text)?)
            }
            ("expiration", Value::Null) => {}
            ("access", Value::Object(object)) => access = Some(object),
            ("metadata", Value::Object(object)) => metadata = object,
            (other, _) => {
                return Err(RestError::parse(format!(
                "failed to parse cross-cluster api key request. unexpected field or type [{other}]"
            )))
            }
        }
    }
    let invalid = |reason: &str| {
        RestError::new(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            format!("Validation Failed: 1: {reason};"),
        )
    };
    let name = name.ok_or_else(|| invalid("api key name is required"))?;
    let access = access.ok_or_else(|| invalid("access is required"))?;
    for (kind, entries) in &access {
        if kind != "replication" && kind != "search" {
            return Err(RestError::parse(format!(
                "failed to parse cross-cluster api key access. unexpected field [{kind}]"
            )));
        }
        let valid = entries.as_array().is_some_and(|entries| {
            entries.iter().all(|entry| {
                entry["names"]
                    .as_array()
                    .is_some_and(|names| !names.is_empty() && names.iter().all(Value::is_string))
            })
        });
        if !valid {
            return Err(invalid(&format!(
                "[access.{kind}] must be a list of objects with a non-empty [names] list of index patterns"
            )));
        }
    }
    let access = Value::Object(access);
    if crate::security::api_keys::replication_names(Some(&access)).is_empty()
        && access.get("search").is_none()
    {
        return Err(invalid(
            "must specify non-empty access for either [search] or [replication]",
        ));
    }
    store_api_key(
        &node,
        ApiKeyFields {
            name,
            expiration,
            username: principal.username.clone(),
            key_type: crate::security::api_keys::CROSS_CLUSTER_KEY,
            role_descriptors: Map::new(),
            limited_by: Vec::new(),
            access: Some(access),
            metadata,
        },
    )
    .await
}

/// What a creation request says of a new API key.
struct ApiKeyFields {
    name: String,
    /// How long from now it is valid.
    expiration: Option<std::time::Duration>,
    username: String,
    key_type: &'static str,
    role_descriptors: Map<String, Value>,
    limited_by: Vec<String>,
    access: Option<Value>,
    metadata: Map<String, Value>,
}

/// Stores a new API key (REST or cross-cluster) and answers its id and secret, once, as
/// Elasticsearch's creation APIs do.
async fn store_api_key(node: &NodeState, fields: ApiKeyFields) -> Result<Response, RestError> {
    let now = crate::security::api_keys::now_millis();
    let expiration = fields
        .expiration
        .map(|after| now.saturating_add(u64::try_from(after.as_millis()).unwrap_or(u64::MAX)));
    let name = fields.name;
    let key = crate::security::api_keys::ApiKey {
        name: name.clone(),
        key_hash: String::new(),
        creation: now,
        expiration,
        invalidated: false,
        invalidation: None,
        username: fields.username,
        key_type: fields.key_type.to_string(),
        role_descriptors: fields.role_descriptors,
        limited_by: fields.limited_by,
        access: fields.access,
        metadata: fields.metadata,
    };
    let created = on_security_files(node, "creating the API key", move |security| {
        security.api_keys().create(key)
    })
    .await?;
    let mut answer = json!({
        "id": created.id,
        "name": name,
        "api_key": created.key,
        "encoded": created.encoded(),
    });
    if let Some(expiration) = expiration {
        answer["expiration"] = json!(expiration);
    }
    Ok(ok(answer))
}
