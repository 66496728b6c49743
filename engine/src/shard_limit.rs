//! The node-wide shard limit (Elasticsearch's `cluster.max_shards_per_node`): every action that
//! adds open shards to a node (creating an index, opening a closed one, following a leader) is
//! refused when the shards open, plus those being added by actions in progress, plus the new
//! ones would exceed it.
//!
//! A Tandem node holds one copy of each shard, so the count is of the shards the node opens:
//! `number_of_replicas` is kept as a setting but adds no shard here (it would in a cluster of
//! Elasticsearch nodes, where replicas are allocated elsewhere).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{EngineError, Result};

/// The cluster setting's name.
pub const MAX_SHARDS_PER_NODE_SETTING: &str = "cluster.max_shards_per_node";
/// Its default, Elasticsearch's.
pub const DEFAULT_MAX_SHARDS_PER_NODE: u64 = 1000;
/// Its smallest value, Elasticsearch's.
pub const MIN_MAX_SHARDS_PER_NODE: u64 = 1;
/// Its largest value (Elasticsearch's is an `int`).
pub const MAX_MAX_SHARDS_PER_NODE: u64 = i32::MAX as u64;

/// The limit in effect, changed at once by a settings update.
#[derive(Debug)]
pub struct ShardLimit {
    max_shards: AtomicU64,
}

impl Default for ShardLimit {
    fn default() -> Self {
        ShardLimit {
            max_shards: AtomicU64::new(DEFAULT_MAX_SHARDS_PER_NODE),
        }
    }
}

impl ShardLimit {
    /// The limit in effect.
    pub fn get(&self) -> u64 {
        self.max_shards.load(Ordering::Acquire)
    }

    /// Sets the limit (asserted within the setting's range: the setting is validated where
    /// it is parsed).
    pub fn set(&self, max_shards: u64) {
        assert!(
            (MIN_MAX_SHARDS_PER_NODE..=MAX_MAX_SHARDS_PER_NODE).contains(&max_shards),
            "{MAX_SHARDS_PER_NODE_SETTING} is validated before it is set"
        );
        self.max_shards.store(max_shards, Ordering::Release);
    }

    /// Refuses adding `adding` shards to a node that has `open` already (those being added
    /// by actions in progress included) when the sum would exceed the limit.
    pub fn check(&self, adding: u64, open: u64) -> Result<()> {
        let limit = self.get();
        if adding > 0 && open.saturating_add(adding) > limit {
            return Err(EngineError::ShardLimitExceeded {
                adding,
                open,
                limit,
            });
        }
        Ok(())
    }
}

/// Parses a value of [`MAX_SHARDS_PER_NODE_SETTING`] (an integer, as a number or a string) as
/// Elasticsearch does; the error is the reason it gives.
pub fn parse_max_shards_per_node(text: &str) -> std::result::Result<u64, String> {
    let value: i64 = text.parse().map_err(|_| {
        format!("Failed to parse value [{text}] for setting [{MAX_SHARDS_PER_NODE_SETTING}]")
    })?;
    if value < MIN_MAX_SHARDS_PER_NODE as i64 {
        return Err(format!(
            "Failed to parse value [{text}] for setting [{MAX_SHARDS_PER_NODE_SETTING}] must be >= {MIN_MAX_SHARDS_PER_NODE}"
        ));
    }
    if value > MAX_MAX_SHARDS_PER_NODE as i64 {
        return Err(format!(
            "Failed to parse value [{text}] for setting [{MAX_SHARDS_PER_NODE_SETTING}] must be <= {MAX_MAX_SHARDS_PER_NODE}"
        ));
    }
    Ok(value as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_open_and_added_shards_and_says_so_as_elasticsearch_does() {
        let limit = ShardLimit::default();
        assert_eq!(limit.get(), 1000);
        limit.check(1000, 0).unwrap();
        limit.check(2, 998).unwrap();
        limit.check(0, 5000).unwrap();
        let error = limit.check(2, 999).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Validation Failed: 1: this action would add [2] shards, but this cluster \
             currently has [999]/[1000] maximum normal shards open;"
        );
        assert_eq!(error.status(), 400);
        assert_eq!(error.type_name(), "validation_exception");
        limit.set(5);
        assert!(limit.check(1, 5).is_err());
        limit.check(5, 0).unwrap();
    }

    #[test]
    fn the_setting_is_an_integer_of_at_least_one() {
        assert_eq!(parse_max_shards_per_node("7"), Ok(7));
        assert!(parse_max_shards_per_node("0")
            .unwrap_err()
            .contains("must be >= 1"));
        assert!(parse_max_shards_per_node("many")
            .unwrap_err()
            .contains("Failed to parse value [many]"));
        assert!(parse_max_shards_per_node("1.5").is_err());
        assert!(parse_max_shards_per_node("3000000000")
            .unwrap_err()
            .contains("must be <="));
    }
}
