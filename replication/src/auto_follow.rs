//! Auto-follow patterns (`PUT /_ccr/auto_follow/{name}`): the coordinator polls each remote
//! cluster's index list and follows every new leader index a pattern matches.
//!
//! Rules (Elasticsearch's):
//! - `leader_index_patterns` are simple wildcards (`*` matches any run of characters);
//!   `leader_index_exclusion_patterns` win over them;
//! - indices that already match when a pattern is created are never followed by it;
//! - a paused pattern follows nothing; indices created meanwhile are followed on resume;
//! - an index matched by two patterns is followed by neither while both exist, and the error
//!   is recorded;
//! - `follow_index_pattern` names the follower (`{{leader_index}}` is replaced; default: the
//!   leader's name).
//!
//! Patterns, and per pattern the leader index uuids seen at creation and those followed, are
//! persisted atomically in `<state_dir>/ccr_auto_follow.json`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tandem_recovery::leader_api::LeaderIndexSummary;
use tokio::sync::Mutex;

use crate::error::CcrError;
use crate::follower_indices::{FollowRequest, FollowerIndices};
use crate::params::FollowParameters;
use crate::remote::RemoteClusters;
use crate::state_file;
use crate::stats::ErrorBody;

/// File of the persisted auto-follow state.
const STATE_FILE: &str = "ccr_auto_follow.json";
/// Recent errors kept for stats.
const RECENT_ERRORS: usize = 32;
/// The leader index name a `follow_index_pattern` is checked with at PUT: one character, so
/// that only the pattern's own text can make the name too long or invalid.
const SAMPLE_LEADER_INDEX: &str = "a";
/// Placeholder replaced by the leader index name in `follow_index_pattern`.
const LEADER_INDEX_PLACEHOLDER: &str = "{{leader_index}}";

/// An auto-follow pattern as created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoFollowPattern {
    /// Alias of the leader cluster.
    pub remote_cluster: String,
    /// Leader index names to follow (wildcards).
    pub leader_index_patterns: Vec<String>,
    /// Leader index names never to follow (wildcards).
    #[serde(default)]
    pub leader_index_exclusion_patterns: Vec<String>,
    /// Name of the follower index; `{{leader_index}}` is replaced.
    #[serde(default)]
    pub follow_index_pattern: Option<String>,
    /// Follow parameters of the followers it creates (request form).
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// Settings of the follower indices it creates that differ from their leader's.
    #[serde(default)]
    pub settings: Map<String, Value>,
}

impl AutoFollowPattern {
    /// Checks the pattern: a remote cluster, at least one leader pattern, valid parameters.
    pub fn validate(&self) -> Result<(), CcrError> {
        if self.remote_cluster.is_empty() {
            return Err(CcrError::InvalidArgument(
                "[remote_cluster] is missing".to_string(),
            ));
        }
        if self.leader_index_patterns.is_empty() {
            return Err(CcrError::InvalidArgument(
                "[leader_index_patterns] is missing".to_string(),
            ));
        }
        FollowParameters::from_es_json(&self.parameters)?.validate()?;
        if let Some(pattern) = &self.follow_index_pattern {
            // Leader index names are valid index names, so a pattern whose parts around the
            // placeholder are acceptable makes a valid name for every leader; checking it with
            // one plain leader name finds a bad pattern at PUT rather than at every match.
            let sample = self.follower_index_name(SAMPLE_LEADER_INDEX);
            tandem_engine::index::validate_index_name(&sample).map_err(|error| {
                CcrError::InvalidArgument(format!(
                    "[follow_index_pattern] [{pattern}] does not make a valid index name: {error}"
                ))
            })?;
        }
        if !self.settings.is_empty() {
            tandem_engine::index::IndexSettings::default()
                .apply_es_json(&Value::Object(self.settings.clone()), false)?;
        }
        Ok(())
    }

    /// True when `index` matches a leader pattern and no exclusion pattern.
    pub fn matches(&self, index: &str) -> bool {
        self.leader_index_patterns
            .iter()
            .any(|pattern| wildcard_match(pattern, index))
            && !self
                .leader_index_exclusion_patterns
                .iter()
                .any(|pattern| wildcard_match(pattern, index))
    }

    /// The follower index name for `leader_index`.
    pub fn follower_index_name(&self, leader_index: &str) -> String {
        match &self.follow_index_pattern {
            Some(pattern) => pattern.replace(LEADER_INDEX_PLACEHOLDER, leader_index),
            None => leader_index.to_string(),
        }
    }
}

/// Simple wildcard matching: `*` matches any run of characters (also empty); everything else
/// matches itself.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// The persisted state of one pattern.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PatternState {
    pattern: AutoFollowPattern,
    active: bool,
    /// Uuids of the leader indices that matched when the pattern was created.
    existing_at_creation: BTreeSet<String>,
    /// Uuids of the leader indices this pattern followed (or tried to).
    followed: BTreeSet<String>,
}

/// One recorded auto-follow error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AutoFollowError {
    /// The leader index (or the pattern, for a failed remote request).
    pub leader_index: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The error.
    pub auto_follow_exception: ErrorBody,
}

/// Per remote cluster, the last poll.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AutoFollowedCluster {
    /// Alias of the remote cluster.
    pub cluster_name: String,
    /// Milliseconds since it was last polled.
    pub time_since_last_check_millis: u64,
    /// Polls of it so far (stands in for Elasticsearch's cluster-state metadata version).
    pub last_seen_metadata_version: u64,
}

/// Auto-follow stats (`GET /_ccr/stats`, `auto_follow_stats`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AutoFollowStats {
    /// Followers created.
    pub number_of_successful_follow_indices: u64,
    /// Follow attempts that failed.
    pub number_of_failed_follow_indices: u64,
    /// Index-list requests to remote clusters that failed.
    pub number_of_failed_remote_cluster_state_requests: u64,
    /// The most recent errors, oldest first.
    pub recent_auto_follow_errors: Vec<AutoFollowError>,
    /// Per remote cluster, the last poll.
    pub auto_followed_clusters: Vec<AutoFollowedCluster>,
}

#[derive(Default)]
struct Counters {
    successful: u64,
    failed: u64,
    failed_remote: u64,
    recent: VecDeque<AutoFollowError>,
    last_check: BTreeMap<String, (Instant, u64)>,
}

/// Holds the auto-follow patterns of this cluster and follows what they match.
pub struct AutoFollowCoordinator {
    followers: Arc<FollowerIndices>,
    remotes: Arc<RemoteClusters>,
    state_dir: PathBuf,
    patterns: Mutex<BTreeMap<String, PatternState>>,
    counters: parking_lot::Mutex<Counters>,
}

impl AutoFollowCoordinator {
    /// Loads the persisted patterns of `state_dir`.
    pub fn open(
        followers: Arc<FollowerIndices>,
        remotes: Arc<RemoteClusters>,
        state_dir: &Path,
    ) -> Result<AutoFollowCoordinator, CcrError> {
        let patterns = state_file::load(&**followers.storage(), state_dir, STATE_FILE)?;
        Ok(AutoFollowCoordinator {
            followers,
            remotes,
            state_dir: state_dir.to_path_buf(),
            patterns: Mutex::new(patterns),
            counters: parking_lot::Mutex::new(Counters::default()),
        })
    }

    /// Creates or replaces the pattern `name`. The leader indices it matches now are
    /// remembered and never followed by it (on a replacement, the remembered set is kept).
    pub async fn put_pattern(
        &self,
        name: &str,
        pattern: AutoFollowPattern,
    ) -> Result<(), CcrError> {
        pattern.validate()?;
        let client = self.remotes.get(&pattern.remote_cluster)?;
        let existing: BTreeSet<String> = client
            .list_indices()
            .await?
            .into_iter()
            .filter(|index| pattern.matches(&index.name))
            .map(|index| index.uuid)
            .collect();
        let mut patterns = self.patterns.lock().await;
        let state = match patterns.remove(name) {
            Some(mut previous) => {
                previous.pattern = pattern;
                previous.existing_at_creation.extend(existing);
                previous
            }
            None => PatternState {
                pattern,
                active: true,
                existing_at_creation: existing,
                followed: BTreeSet::new(),
            },
        };
        patterns.insert(name.to_string(), state);
        self.persist(&patterns).await
    }

    /// The pattern `name` and whether it is active, or all of them.
    pub async fn get_patterns(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<(String, AutoFollowPattern, bool)>, CcrError> {
        let patterns = self.patterns.lock().await;
        if let Some(name) = name {
            if !patterns.contains_key(name) {
                return Err(CcrError::NoSuchPattern(name.to_string()));
            }
        }
        Ok(patterns
            .iter()
            .filter(|(key, _)| name.is_none_or(|wanted| wanted == key.as_str()))
            .map(|(key, state)| (key.clone(), state.pattern.clone(), state.active))
            .collect())
    }

    /// Deletes a pattern (its followers keep following).
    pub async fn delete_pattern(&self, name: &str) -> Result<(), CcrError> {
        let mut patterns = self.patterns.lock().await;
        patterns
            .remove(name)
            .ok_or_else(|| CcrError::NoSuchPattern(name.to_string()))?;
        self.persist(&patterns).await
    }

    /// Pauses (`active = false`) or resumes a pattern.
    pub async fn set_active(&self, name: &str, active: bool) -> Result<(), CcrError> {
        let mut patterns = self.patterns.lock().await;
        let state = patterns
            .get_mut(name)
            .ok_or_else(|| CcrError::NoSuchPattern(name.to_string()))?;
        state.active = active;
        self.persist(&patterns).await
    }

    /// One round: lists every remote cluster an active pattern uses and follows what is new.
    /// Returns the follower indices created.
    pub async fn poll_once(&self) -> Vec<String> {
        let mut patterns = self.patterns.lock().await;
        let clusters: BTreeSet<String> = patterns
            .values()
            .filter(|state| state.active)
            .map(|state| state.pattern.remote_cluster.clone())
            .collect();
        let mut created = Vec::new();
        for cluster in clusters {
            let listed = match self.list(&cluster).await {
                Ok(listed) => listed,
                Err(error) => {
                    self.record_error(&cluster, &error, true);
                    continue;
                }
            };
            for index in listed {
                self.consider(&mut patterns, &cluster, &index, &mut created)
                    .await;
            }
        }
        if let Err(error) = self.persist(&patterns).await {
            tracing::warn!(%error, "cannot persist the auto-follow state");
        }
        created
    }

    async fn list(&self, cluster: &str) -> Result<Vec<LeaderIndexSummary>, CcrError> {
        let client = self.remotes.get(cluster)?;
        let listed = client.list_indices().await?;
        let mut counters = self.counters.lock();
        let seen = counters
            .last_check
            .get(cluster)
            .map_or(0, |(_, seen)| *seen);
        counters
            .last_check
            .insert(cluster.to_string(), (Instant::now(), seen + 1));
        Ok(listed)
    }

    async fn consider(
        &self,
        patterns: &mut BTreeMap<String, PatternState>,
        cluster: &str,
        index: &LeaderIndexSummary,
        created: &mut Vec<String>,
    ) {
        let candidates: Vec<String> = patterns
            .iter()
            .filter(|(_, state)| {
                state.active
                    && state.pattern.remote_cluster == cluster
                    && state.pattern.matches(&index.name)
                    && !state.existing_at_creation.contains(&index.uuid)
                    && !state.followed.contains(&index.uuid)
            })
            .map(|(name, _)| name.clone())
            .collect();
        let [name] = candidates.as_slice() else {
            if candidates.len() > 1 {
                let error = CcrError::InvalidArgument(format!(
                    "index to follow [{}] for pattern [{}] matches with other patterns {:?}",
                    index.name,
                    candidates[0],
                    &candidates[1..]
                ));
                // Recorded on every poll until a pattern is changed or deleted; then the one
                // left follows it.
                self.record_error(&index.name, &error, false);
            }
            return;
        };
        let Some(state) = patterns.get_mut(name) else {
            return;
        };
        state.followed.insert(index.uuid.clone());
        let follower_index = state.pattern.follower_index_name(&index.name);
        let parameters = match FollowParameters::from_es_json(&state.pattern.parameters) {
            Ok(parameters) => parameters,
            Err(error) => {
                self.record_error(&index.name, &error.into(), false);
                return;
            }
        };
        let request = FollowRequest {
            remote_cluster: cluster.to_string(),
            leader_index: index.name.clone(),
            follower_index: follower_index.clone(),
            parameters,
            // Errors are recorded in the auto-follow stats, so the recovery is waited for.
            wait_for_active_shards: true,
            settings: Value::Object(state.pattern.settings.clone()),
        };
        match self.followers.follow(request).await {
            Ok(_) => {
                tracing::info!(leader = %index.name, follower = %follower_index, pattern = %name, "auto-followed");
                self.counters.lock().successful += 1;
                created.push(follower_index);
            }
            Err(error) => self.record_error(&index.name, &error, false),
        }
    }

    fn record_error(&self, leader_index: &str, error: &CcrError, remote: bool) {
        tracing::warn!(leader_index, %error, "auto-follow failed");
        let mut counters = self.counters.lock();
        if remote {
            counters.failed_remote += 1;
        } else {
            counters.failed += 1;
        }
        if counters.recent.len() == RECENT_ERRORS {
            counters.recent.pop_front();
        }
        counters.recent.push_back(AutoFollowError {
            leader_index: leader_index.to_string(),
            timestamp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_millis() as u64),
            auto_follow_exception: ErrorBody {
                error_type: error.type_name().to_string(),
                reason: error.to_string(),
            },
        });
    }

    /// The auto-follow stats.
    pub fn stats(&self) -> AutoFollowStats {
        let counters = self.counters.lock();
        AutoFollowStats {
            number_of_successful_follow_indices: counters.successful,
            number_of_failed_follow_indices: counters.failed,
            number_of_failed_remote_cluster_state_requests: counters.failed_remote,
            recent_auto_follow_errors: counters.recent.iter().cloned().collect(),
            auto_followed_clusters: counters
                .last_check
                .iter()
                .map(|(cluster, (at, seen))| AutoFollowedCluster {
                    cluster_name: cluster.clone(),
                    time_since_last_check_millis: at.elapsed().as_millis() as u64,
                    last_seen_metadata_version: *seen,
                })
                .collect(),
        }
    }

    /// Polls every `interval` until the returned handle is dropped or aborted.
    pub fn spawn(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let coordinator = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(coordinator) = coordinator.upgrade() else {
                    return;
                };
                coordinator.poll_once().await;
            }
        })
    }

    /// Stores `patterns`, on the blocking pool. Callers hold the `patterns` lock across it,
    /// so that the file follows the changes in their order (see
    /// [`state_file::store_off_thread`] for why that is safe).
    fn persist(&self, patterns: &BTreeMap<String, PatternState>) -> state_file::StoreOffThread {
        state_file::store_off_thread(
            self.followers.storage().clone(),
            &self.state_dir,
            STATE_FILE,
            patterns,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_elasticsearch_simple_patterns() {
        assert!(wildcard_match("logs-*", "logs-2026"));
        assert!(wildcard_match("logs-*", "logs-"));
        assert!(!wildcard_match("logs-*", "metrics-1"));
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("*-prod-*", "eu-prod-1"));
        assert!(!wildcard_match("*-prod-*", "eu-dev-1"));
        assert!(wildcard_match("a*b*c", "abc"));
        assert!(!wildcard_match("a*b*c", "acb"));
        assert!(!wildcard_match("ab*ba", "aba"), "the ends may not overlap");
        assert!(wildcard_match("exact", "exact"));
        assert!(!wildcard_match("exact", "exactly"));
    }

    #[test]
    fn exclusions_win_and_the_follower_name_is_derived() {
        let pattern = AutoFollowPattern {
            remote_cluster: "leader".to_string(),
            leader_index_patterns: vec!["logs-*".to_string()],
            leader_index_exclusion_patterns: vec!["logs-secret*".to_string()],
            follow_index_pattern: Some("{{leader_index}}-copy".to_string()),
            parameters: Map::new(),
            settings: Map::new(),
        };
        assert!(pattern.matches("logs-web"));
        assert!(!pattern.matches("logs-secret-1"));
        assert_eq!(pattern.follower_index_name("logs-web"), "logs-web-copy");
        let default_name = AutoFollowPattern {
            follow_index_pattern: None,
            ..pattern.clone()
        };
        assert_eq!(default_name.follower_index_name("logs-web"), "logs-web");
        assert!(AutoFollowPattern {
            leader_index_patterns: vec![],
            ..pattern.clone()
        }
        .validate()
        .is_err());
        let mut settings = Map::new();
        settings.insert("index.number_of_replicas".to_string(), Value::from(0));
        let with_settings = AutoFollowPattern {
            settings: settings.clone(),
            ..pattern.clone()
        };
        assert!(with_settings.validate().is_ok());
        settings.insert("index.number_of_shards".to_string(), Value::from(2));
        let error = AutoFollowPattern {
            settings,
            ..pattern
        }
        .validate()
        .unwrap_err();
        assert!(error.to_string().contains("number_of_shards"), "{error}");
    }

    #[test]
    fn a_follow_index_pattern_that_makes_an_invalid_name_is_refused() {
        let pattern = |follow_index_pattern: &str| AutoFollowPattern {
            remote_cluster: "leader".to_string(),
            leader_index_patterns: vec!["logs-*".to_string()],
            leader_index_exclusion_patterns: vec![],
            follow_index_pattern: Some(follow_index_pattern.to_string()),
            parameters: Map::new(),
            settings: Map::new(),
        };
        for good in [
            "{{leader_index}}",
            "copy-{{leader_index}}",
            "{{leader_index}}.f",
        ] {
            assert!(pattern(good).validate().is_ok(), "{good}");
        }
        for bad in [
            "Copy-{{leader_index}}",
            "{{leader_index}}/x",
            "_{{leader_index}}",
            "{{leader_index}} copy",
            "..",
        ] {
            let error = pattern(bad).validate().expect_err(bad);
            assert_eq!(error.status(), 400, "{bad}");
            assert!(
                error.to_string().contains("[follow_index_pattern]"),
                "{bad}: {error}"
            );
        }
        let long = format!("{}{{{{leader_index}}}}", "x".repeat(255));
        assert!(pattern(&long).validate().is_err());
    }
}
